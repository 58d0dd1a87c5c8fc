"""Serving benchmark: what the HTTP layer costs on top of onnxruntime, per input encoding.

    python -m bench.serve [--duration 5] [--concurrency 1 8 32] [--no-torch] [--json FILE]

Starts the service under real gunicorn (gunicorn.conf.py) on a free loopback port, and a plain
Flask + PyTorch server (bench/serve_torch_baseline.py) with the same workers and threads, then
for each server, request body and client concurrency runs a closed loop of keep-alive clients
for a bounded time.  Alongside, it times onnxruntime's session.run alone on the same model
file with the service's session options.  Prints one table; bench/README.md explains it.
Both servers are stopped on exit.  Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.serve_load import post, run_cell
from bench.serve_payloads import Body, bodies, mnist_like_batch
from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, read_manifest
from service.repository import version_numbers
from service.runtime import session_options

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mnist_mlp"
BATCH = 64


@dataclass(frozen=True)
class Server:
    name: str
    app: str  # gunicorn's APP_MODULE
    gunicorn_args: list[str]
    env: dict[str, str]
    cwd: Path = ROOT  # where it runs, and so whose code it imports (another checkout, say)


@dataclass(frozen=True)
class Row:
    server: str
    body: str
    body_kb: float
    concurrency: int
    requests: int
    errors: int
    requests_per_second: float
    images_per_second: float
    p50_ms: float
    p99_ms: float
    raw_ort_share: float  # images/s as a fraction of single-thread session.run at this batch size


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running(server: Server, port: int, log_dir: Path) -> Iterator[subprocess.Popen]:
    """gunicorn serving ``server`` on 127.0.0.1:port until the block ends; waits for /readyz."""
    log_path = log_dir / f"{server.name.replace(' ', '_')}.log"
    command = [sys.executable, "-m", "gunicorn", *server.gunicorn_args,
               "--bind", f"127.0.0.1:{port}", server.app]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=server.cwd, env={**os.environ, **server.env},
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(port, process, log_path)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 60,
                     path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log_path}:\n{log_path.read_text()[-2000:]}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError(f"server not ready on port {port} after {timeout:.0f} s; see {log_path}")


@dataclass(frozen=True)
class ProcessStat:
    parent: int
    cpu_seconds: float  # user + system, so far


def process_table() -> dict[int, ProcessStat]:
    """Every live process's parent and CPU time, from /proc/<pid>/stat (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The fields after the command name, which may hold spaces and parentheses.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that ended meanwhile
            continue
        table[int(entry.name)] = ProcessStat(int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return table


def worker_pids(master: int) -> list[int]:
    """The master's child processes (gunicorn workers)."""
    return sorted(pid for pid, process in process_table().items() if process.parent == master)


def newest_model_file(repository: Path) -> Path:
    versions = version_numbers(repository / MODEL)
    if not versions:
        sys.exit(f"no version of {MODEL} in {repository}: train it first (python -m training)")
    version_dir = repository / MODEL / str(versions[-1])
    read_manifest(version_dir / MANIFEST_FILENAME)  # refuse a repository the service would refuse
    return version_dir / MODEL_FILENAME


def raw_onnxruntime(model_file: Path, batch: int, seconds: float) -> float:
    """Images/s of session.run alone, one thread, with the service's session options."""
    session = ort.InferenceSession(str(model_file), session_options(1), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    feed = {model_input.name: (mnist_like_batch(batch) / np.float32(255)).astype(np.float32)}
    for _ in range(20):
        session.run(None, feed)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feed)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def probabilities(answer: bytes, body: Body) -> np.ndarray:
    """The probabilities in an answer: one image's labels -> probability, or a batch's rows."""
    payload = json.loads(answer)
    return np.array(list(payload["probabilities"].values()) if body.images == 1 else payload["outputs"])


def check_answers(port: int, reference_port: int | None, all_bodies: list[Body]) -> None:
    """Every body is answered with 200, and the baseline agrees with the service."""
    for body in all_bodies:
        status, answer = post(port, body.path, body.content_type, body.data)
        if status != 200:
            sys.exit(f"{body.name}: HTTP {status}: {answer[:300]!r}")
        if reference_port is not None:
            _, expected = post(reference_port, body.path, body.content_type, body.data)
            difference = np.abs(probabilities(answer, body) - probabilities(expected, body)).max()
            if not difference <= 1e-4:
                sys.exit(f"{body.name}: the baseline's answer differs from the service's by {difference:.3g}")


def measure(server: Server, port: int, all_bodies: list[Body], args, raw: dict[int, float]) -> list[Row]:
    rows = []
    for body in all_bodies:
        # Warm every worker's connection handling and allocator before counting.
        run_cell(port, body.path, body.content_type, body.data, 4, 1.0, 200)
        for concurrency in args.concurrency:
            cell = run_cell(port, body.path, body.content_type, body.data,
                            concurrency, args.duration, args.max_requests)
            images = cell.requests_per_second * body.images
            rows.append(Row(server.name, body.name, len(body.data) / 1000, concurrency, cell.requests, cell.errors,
                            cell.requests_per_second, images, cell.latency_ms(50), cell.latency_ms(99),
                            images / raw[body.images]))
            print(f"  {server.name:<12} {body.name:<17} c={concurrency:<3} {cell.requests_per_second:8.1f} req/s",
                  file=sys.stderr)
    return rows


def print_table(rows: list[Row], raw: dict[int, float], setup: str) -> None:
    print(f"\n{setup}\n")
    print("onnxruntime session.run alone, 1 thread: " +
          ", ".join(f"batch {batch}: {rate:,.0f} images/s" for batch, rate in sorted(raw.items())))
    print()
    header = f"{'server':<12} {'body':<17} {'kB':>5} {'conc':>4} {'req/s':>9} {'images/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'of raw':>7} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.server:<12} {row.body:<17} {row.body_kb:>5.0f} {row.concurrency:>4} {row.requests_per_second:>9.1f} "
              f"{row.images_per_second:>10,.0f} {row.p50_ms:>8.1f} {row.p99_ms:>8.1f} "
              f"{row.raw_ort_share:>6.1%} {row.errors:>6}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="request cap per cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, both servers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker, both servers")
    parser.add_argument("--no-torch", action="store_true", help="skip the Flask + PyTorch baseline")
    parser.add_argument("--json", type=Path, help="also write the rows here (bench/results/ is git-ignored)")
    args = parser.parse_args(argv)

    repository = args.repository.resolve()
    model_file = newest_model_file(repository)
    all_bodies = bodies(MODEL, BATCH)
    raw = {batch: raw_onnxruntime(model_file, batch, 2.0) for batch in (1, BATCH)}
    servers = [Server(
        "service", "service:create_app()", ["--config", "gunicorn.conf.py"],
        # One onnxruntime thread per worker, like the baseline's one torch thread.
        {"MODEL_REPOSITORY": str(repository), "WORKERS": str(args.workers),
         "WORKER_THREADS": str(args.threads), "INTRA_OP_THREADS": "1", "LOG_LEVEL": "WARNING"},
    )]
    if not args.no_torch:
        servers.append(Server(
            "flask+torch", "bench.serve_torch_baseline:create_app()",
            ["--workers", str(args.workers), "--threads", str(args.threads), "--worker-class", "gthread"],
            {"MODEL_REPOSITORY": str(repository), "TORCH_THREADS": "1"},
        ))

    rows = []
    ports = {server.name: free_port() for server in servers}
    # Both servers run throughout (an idle one costs no CPU) so that their answers can be compared.
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as log_dir, ExitStack() as stack:
        for server in servers:
            stack.enter_context(running(server, ports[server.name], Path(log_dir)))
        check_answers(ports["service"], ports.get("flask+torch"), all_bodies)
        for server in servers:
            rows += measure(server, ports[server.name], all_bodies, args, raw)

    setup = (f"{MODEL} ({model_file.relative_to(repository)}), {os.cpu_count()} CPUs, gunicorn gthread "
             f"{args.workers} workers x {args.threads} threads, 1 inference thread per worker; "
             f"clients on the same machine; {args.duration:g} s per cell")
    print_table(rows, raw, setup)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setup": setup, "raw_onnxruntime_images_per_second": raw,
                                         "rows": [asdict(row) for row in rows]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
