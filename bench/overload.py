"""Overload and slow clients: phone photos from many clients, a health probe, slowloris.

    python -m bench.overload                          # about 70 s
    python -m bench.overload --slowloris 0            # photos and the probe only
    python -m bench.overload --gunicorn-arg=--worker-class=gthread   # another worker model
    python -m bench.overload --json bench/results/overload.json

One server throughout (gunicorn.conf.py, WORKERS=2, INTRA_OP_THREADS=1), then four phases:

1. before: one small PNG client for --quiet seconds (p50), then 4 photo clients (the
   reference photos/s);
2. slowloris alone: 4 small-PNG clients, without and then with --slowloris slow connections
   open (each sends its request headers one byte every 0.5 s, and reconnects when dropped);
3. overload: --clients photo clients (3000x2000 JPEG, 1.3 MB) for --duration seconds, a
   ``GET /healthz`` probe on a new connection every 0.25 s (as a kubelet does), and the slow
   connections;
4. after: one small PNG client again, from the moment the overload stops;
5. drain: 8 photo clients, and after 2 s a SIGTERM to the master: how long until it exits,
   and what the clients saw (answers, refused connections, anything else).

Clients use keep-alive connections and a 30 s timeout; on a 503 they wait what Retry-After
says (at most 1 s) before trying again, as a well-behaved client does (--no-retry-after: at
once).  It prints status codes, client errors, health latency, throughput and the worker
pids before and after.  Nothing here asserts; bench/README.md has the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.serve import ROOT, Server, free_port, running, worker_pids
from bench.serve_payloads import drawn_digit, phone_photo, png_bytes


@dataclass
class Tally:
    """What one client thread saw; merged after the phase."""

    codes: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, requests answered 200
    shed_without_retry_after: int = 0

    def merge(self, other: Tally) -> None:
        self.codes.update(other.codes)
        self.errors.update(other.errors)
        self.latencies += other.latencies
        self.shed_without_retry_after += other.shed_without_retry_after


@dataclass
class PhaseResult:
    name: str
    seconds: float
    tally: Tally

    def ok_per_second(self) -> float:
        return self.tally.codes.get(200, 0) / self.seconds

    def percentile_ms(self, q: float) -> float:
        values = self.tally.latencies
        return float(np.percentile(values, q) * 1000) if values else float("nan")


def client_loop(port: int, path: str, content_type: str, body: bytes, stop: threading.Event,
                honour_retry_after: bool, timeout: float = 30) -> Tally:
    """Send ``body`` again as soon as the answer arrives, on one keep-alive connection."""
    tally = Tally()
    headers = {"Content-Type": content_type}
    connection = None
    while not stop.is_set():
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except TimeoutError:
            tally.errors["timeout"] += 1
        except (OSError, http.client.HTTPException) as error:
            tally.errors[type(error).__name__] += 1
        else:
            tally.codes[response.status] += 1
            if response.status == 200:
                tally.latencies.append(time.perf_counter() - started)
            elif response.status == 503:
                retry_after = response.getheader("Retry-After")
                if retry_after is None:
                    tally.shed_without_retry_after += 1
                elif honour_retry_after:
                    stop.wait(min(float(retry_after), 1.0))
            if not response.will_close:
                continue
        connection.close()
        connection = None
    if connection is not None:
        connection.close()
    return tally


def probe_loop(port: int, interval: float, stop: threading.Event) -> Tally:
    """GET /healthz on a new connection every ``interval`` s, 10 s timeout, like a kubelet."""
    tally = Tally()
    next_probe = time.monotonic()
    while not stop.is_set():
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            tally.codes[response.status] += 1
            tally.latencies.append(time.perf_counter() - started)
        except TimeoutError:
            tally.errors["timeout"] += 1
        except (OSError, http.client.HTTPException) as error:
            tally.errors[type(error).__name__] += 1
        finally:
            connection.close()
        next_probe += interval
        stop.wait(max(0.0, next_probe - time.monotonic()))
    return tally


def slowloris_loop(port: int, interval: float, stop: threading.Event) -> Tally:
    """Open a request and send its headers one byte every ``interval`` s, never finishing them.

    ``codes`` counts the answers the server gave before dropping the connection (408 ...),
    ``errors['dropped']`` the connections it closed; then it reconnects.
    """
    tally = Tally()
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as error:
            tally.errors[f"connect: {type(error).__name__}"] += 1
            stop.wait(interval)
            continue
        try:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nX-Slow: ")
            while not stop.wait(interval):
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    answer = sock.recv(65536)
                    if answer.startswith(b"HTTP/1.1 "):
                        tally.codes[int(answer[9:12])] += 1
                    tally.errors["dropped"] += 1
                    break
                sock.sendall(b"a")
        except OSError:
            tally.errors["dropped"] += 1
        finally:
            sock.close()
    return tally


def drain_loop(port: int, body: bytes, stop: threading.Event, signalled: threading.Event) -> Tally:
    """Like client_loop, but a refused connection after the SIGTERM ends it (draining is done)."""
    tally = Tally()
    connection = None
    while not stop.is_set():
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.connect()
            except ConnectionRefusedError:
                tally.codes["refused"] += 1
                connection = None
                if signalled.is_set():
                    break
                continue
        try:
            connection.request("POST", "/predict", body=body, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            tally.errors[type(error).__name__] += 1
            connection.close()
            connection = None
            continue
        tally.codes[response.status] += 1
        if response.will_close:
            connection.close()
            connection = None
    return tally


def run_threads(loops: list[Callable[[threading.Event], Tally]], seconds: float) -> tuple[list[Tally], float]:
    """Run each loop in its own thread for ``seconds``; returns their tallies and the real time."""
    stop = threading.Event()
    results: list[Tally | None] = [None] * len(loops)

    def run(index: int) -> None:
        results[index] = loops[index](stop)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(loops))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def merged(tallies: list[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return total


def shed_counts(port: int) -> dict[str, float]:
    """serving_shed_requests_total by reason, from /metrics (empty before the service had it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    counts = {}
    for line in text.splitlines():
        if line.startswith("serving_shed_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels[len("serving_shed_requests_total") :]] = float(value)
    return counts


def describe(result: PhaseResult) -> str:
    tally = result.tally
    codes = " ".join(f"{code}:{count}" for code, count in sorted(tally.codes.items())) or "-"
    errors = " ".join(f"{name}:{count}" for name, count in sorted(tally.errors.items())) or "-"
    return (f"{result.name:<34} {result.ok_per_second():8.1f} {result.percentile_ms(50):8.1f} "
            f"{result.percentile_ms(100):9.1f}  codes {codes}  errors {errors}"
            + (f"  503-without-Retry-After {tally.shed_without_retry_after}" if tally.shed_without_retry_after else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--clients", type=int, default=48, help="photo clients during the overload (48)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of overload (15)")
    parser.add_argument("--slowloris", type=int, default=8, help="slow connections (8; 0 for none)")
    parser.add_argument("--quiet", type=float, default=4.0, help="seconds of each before/after phase (4)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-retry-after", action="store_true", help="clients retry a 503 at once")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="server environment")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument")
    parser.add_argument("--json", type=Path, help="also write the results here (bench/results/ is git-ignored)")
    args = parser.parse_args(argv)

    photo = phone_photo()
    small = png_bytes(drawn_digit(7, 28))
    honour = not args.no_retry_after
    env = {"MODEL_REPOSITORY": str(args.repository.resolve()), "WORKERS": str(args.workers),
           "INTRA_OP_THREADS": "1", "LOG_LEVEL": "WARNING"}
    env.update(item.split("=", 1) for item in args.env)
    server = Server("service", "service:create_app()", ["--config", "gunicorn.conf.py", *args.gunicorn_arg], env)
    port = free_port()

    def uploaders(count: int, body: bytes, content_type: str) -> list[Callable]:
        return [lambda stop: client_loop(port, "/predict", content_type, body, stop, honour)] * count

    def phase(name: str, loops: list[Callable], seconds: float, keep: int | None = None) -> PhaseResult:
        tallies, elapsed = run_threads(loops, seconds)
        result = PhaseResult(name, elapsed, merged(tallies[:keep] if keep is not None else tallies))
        print(describe(result), file=sys.stderr)
        return result

    slow = [lambda stop: slowloris_loop(port, 0.5, stop)] * args.slowloris
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-overload-") as log_dir, \
            running(server, port, Path(log_dir)) as process:
        workers_before = worker_pids(process.pid)
        shed_before = shed_counts(port)
        results.append(phase("before: small PNG, 1 client", uploaders(1, small, "image/png"), args.quiet))
        results.append(phase("before: photos, 4 clients", uploaders(4, photo, "image/jpeg"), 2 * args.quiet))
        results.append(phase("small PNG, 4 clients", uploaders(4, small, "image/png"), args.quiet))
        if args.slowloris:
            with_slow = phase(f"small PNG, 4 clients + {args.slowloris} slowloris",
                              uploaders(4, small, "image/png") + slow, args.quiet, keep=4)
            results.append(with_slow)
        loops = uploaders(args.clients, photo, "image/jpeg") + [lambda stop: probe_loop(port, 0.25, stop)] + slow
        tallies, elapsed = run_threads(loops, args.duration)
        overload = PhaseResult(f"overload: {args.clients} photo clients", elapsed, merged(tallies[: args.clients]))
        probe = PhaseResult("overload: /healthz every 0.25 s", elapsed, tallies[args.clients])
        results += [overload, probe]
        if args.slowloris:
            results.append(PhaseResult(f"overload: {args.slowloris} slowloris", elapsed,
                                       merged(tallies[args.clients + 1 :])))
        for result in results[-3:]:
            print(describe(result), file=sys.stderr)
        results.append(phase("after: small PNG, 1 client", uploaders(1, small, "image/png"), args.quiet))
        workers_after = worker_pids(process.pid)
        shed = {key: value - shed_before.get(key, 0) for key, value in shed_counts(port).items()}
        log_tail = (Path(log_dir) / "service.log").read_text()[-3000:]

        stop, signalled = threading.Event(), threading.Event()
        drainers: list[Tally] = []
        threads = [threading.Thread(target=lambda: drainers.append(drain_loop(port, photo, stop, signalled)))
                   for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        signalled.set()
        process.terminate()
        terminated = time.perf_counter()
        process.wait(timeout=60)
        drain_seconds = time.perf_counter() - terminated
        stop.set()
        for thread in threads:
            thread.join()
        drain = merged(drainers)

    reference = results[1].ok_per_second()
    setup = (f"{os.cpu_count()} CPUs, {args.workers} workers, {' '.join(args.gunicorn_arg) or 'gunicorn.conf.py as is'}, "
             f"env {' '.join(args.env) or '-'}; clients {'honour' if honour else 'ignore'} Retry-After; "
             f"photo {len(photo) / 1e6:.2f} MB; load average {os.getloadavg()[0]:.1f}")
    print(f"\n{setup}\n")
    print(f"{'phase':<34} {'200/s':>8} {'p50 ms':>8} {'max ms':>9}  status codes, client errors  (latency of the 200s)")
    for result in results:
        print(describe(result))
    print(f"\nphoto throughput under overload: {overload.ok_per_second():.1f}/s = "
          f"{overload.ok_per_second() / reference:.0%} of 4 clients' {reference:.1f}/s")
    print(f"small PNG p50 after / before: {results[-1].percentile_ms(50) / results[0].percentile_ms(50):.2f}")
    print(f"requests shed (serving_shed_requests_total): {shed or 'none'}")
    print(f"workers before {workers_before}, after {workers_after}: "
          f"{'the same' if workers_before == workers_after else 'CHANGED'}")
    if workers_before != workers_after:
        print(log_tail)
    print(f"drain: SIGTERM under 8 photo clients, exit {process.returncode} after {drain_seconds:.2f} s; clients saw "
          + " ".join(f"{code}:{count}" for code, count in sorted(drain.codes.items(), key=str))
          + f"; errors {dict(drain.errors) or 'none'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "setup": setup, "workers_before": workers_before, "workers_after": workers_after, "shed": shed,
            "drain": {"seconds": drain_seconds, "exit": process.returncode, "codes": dict(drain.codes),
                      "errors": dict(drain.errors)},
            "phases": [{"name": r.name, "seconds": r.seconds, "ok_per_second": r.ok_per_second(),
                        "p50_ms": r.percentile_ms(50), "max_ms": r.percentile_ms(100),
                        "codes": dict(r.tally.codes), "errors": dict(r.tally.errors)} for r in results],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
