"""Memory over a long mixed run: each worker's RSS after every 10,000 requests.

    python -m bench.memory                       # 3 blocks of 10,000 requests, about a minute
    python -m bench.memory --blocks 10 --clients 8

Starts the service (gunicorn.conf.py, 2 workers) and sends blocks of requests mixed like a
day's traffic, bad ones included: small and large PNGs, a few phone photos, JSON and .npy
batches, images that fail to decode, unknown models, health and metrics.  After a warm-up
block (caches, allocator pools and onnxruntime's per-shape buffers fill up once), it prints
each worker's resident memory (VmRSS) after every block and the growth per 10,000 requests
from the first measured block to the last.  The same workers must serve throughout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench.serve import ROOT, Server, free_port, running, worker_pids
from bench.serve_payloads import drawn_digit, mnist_like_batch, npy_bytes, phone_photo, png_bytes

BLOCK = 10_000


def request_mix() -> list[tuple[int, str, str, str, bytes]]:
    """(weight, method, path, content type, body): what one block is drawn from."""
    batch = mnist_like_batch(64)
    small = png_bytes(drawn_digit(3, 28).point(lambda v: 255 - v))
    numbers = "/models/mnist_mlp/predict"
    return [
        (30, "POST", "/predict", "image/png", small),
        (15, "POST", "/predict", "image/png", png_bytes(drawn_digit(7, 280).convert("RGB"))),
        (1, "POST", "/predict", "image/jpeg", phone_photo()),
        (10, "POST", numbers, "application/json",
         json.dumps({"inputs": (batch[:1] / np.float32(255)).tolist()}).encode()),
        (4, "POST", numbers, "application/json",
         json.dumps({"inputs": (batch[: np.random.default_rng(1).integers(2, 64)] / np.float32(255)).tolist()}).encode()),
        (10, "POST", numbers, "application/x-npy", npy_bytes(batch)),
        (5, "POST", "/predict", "image/png", small[: len(small) // 2]),  # truncated: 422
        (3, "POST", "/predict?model=no_such_model", "image/png", small),  # 404
        (3, "POST", numbers, "application/json", b'{"inputs": [[1, "x"]]}'),  # 422
        (15, "GET", "/healthz", "", b""),
        (3, "GET", "/readyz", "", b""),
        (1, "GET", "/metrics", "", b""),
    ]


def run_block(port: int, clients: int, seed: int) -> Counter:
    """BLOCK requests drawn from the mix, spread over ``clients`` keep-alive connections."""
    mix = request_mix()
    weights = np.array([entry[0] for entry in mix], dtype=float)
    picks = np.random.default_rng(seed).choice(len(mix), size=BLOCK, p=weights / weights.sum())
    codes: Counter = Counter()
    lock = threading.Lock()

    def client(share: np.ndarray) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        seen = Counter()
        for index in share:
            _, method, path, content_type, body = mix[index]
            try:
                connection.request(method, path, body=body or None,
                                   headers={"Content-Type": content_type} if content_type else {})
                response = connection.getresponse()
                response.read()
                seen[response.status] += 1
                if response.will_close:
                    connection.close()
            except (OSError, http.client.HTTPException) as error:
                seen[type(error).__name__] += 1
                connection.close()
        connection.close()
        with lock:
            codes.update(seen)

    threads = [threading.Thread(target=client, args=(share,)) for share in np.array_split(picks, clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--blocks", type=int, default=3, help=f"measured blocks of {BLOCK:,} requests (3)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="server environment")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument")
    args = parser.parse_args(argv)

    env = {"MODEL_REPOSITORY": str(args.repository.resolve()), "WORKERS": "2", "INTRA_OP_THREADS": "1",
           "LOG_LEVEL": "WARNING"}
    env.update(item.split("=", 1) for item in args.env)
    server = Server("service", "service:create_app()", ["--config", "gunicorn.conf.py", *args.gunicorn_arg], env)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as log_dir, \
            running(server, port, Path(log_dir)) as process:
        workers = worker_pids(process.pid)
        time.sleep(3)  # every worker has loaded its models, not only the first that answered
        idle = {pid: rss_mib(pid) for pid in workers}
        print(f"idle RSS per worker: {', '.join(f'{mib:.1f}' for mib in idle.values())} MiB", file=sys.stderr)
        warm = run_block(port, args.clients, seed=0)
        rows = [("warm-up", warm, {pid: rss_mib(pid) for pid in workers})]
        for block in range(1, args.blocks + 1):
            codes = run_block(port, args.clients, seed=block)
            rows.append((f"after {block * BLOCK:,}", codes, {pid: rss_mib(pid) for pid in workers}))
            print(f"  block {block}: {dict(codes)}", file=sys.stderr)
        same_workers = worker_pids(process.pid) == workers

    print(f"\n{os.cpu_count()} CPUs, 2 workers, {args.clients} clients, blocks of {BLOCK:,} mixed requests\n")
    print(f"{'':<16} " + " ".join(f"{f'worker {i + 1} MiB':>15}" for i in range(len(workers))) + "  status codes")
    print(f"{'idle':<16} " + " ".join(f"{idle[pid]:>15.1f}" for pid in workers))
    for name, codes, rss in rows:
        print(f"{name:<16} " + " ".join(f"{rss[pid]:>15.1f}" for pid in workers) + "  "
              + " ".join(f"{code}:{count}" for code, count in sorted(codes.items(), key=str)))
    first, last = rows[0][2], rows[-1][2]
    growth = [(last[pid] - first[pid]) / args.blocks for pid in workers]
    print(f"\nRSS growth per {BLOCK:,} requests after warm-up: " + ", ".join(f"{g:+.2f} MiB" for g in growth)
          + f"; workers {'the same throughout' if same_workers else 'CHANGED'}")


if __name__ == "__main__":
    main()
