"""The service against a naive Flask + onnxruntime app, side by side, interleaved, with wrk.

    python -m bench.compare                        # 3 rounds x 5 s per cell, about 7 minutes (10 with --floor)
    python -m bench.compare --rounds 4 --duration 5 --json bench/results/compare.json
    python -m bench.compare --kinds png28 health --rounds 2 --duration 3   # a quick look
    mkdir /tmp/before && git archive e701597 | tar -x -C /tmp/before
    python -m bench.compare --baseline /tmp/before      # this checkout against commit e701597, same rounds

Both servers run at once on free loopback ports, each with 2 workers and one onnxruntime
thread per worker: the service as deployed (gunicorn.conf.py, every feature on: request ids,
the JSON log line at INFO, metrics, validation), and bench/naive_app.py under plain gunicorn
sync workers.  For every request kind and connection count, each round times one wrk run
against each server (their order alternating from round to round), so a change in machine
load hits both; the table gives the median over rounds and the ratio service / naive.

For the service it also counts each worker's requests (from its Prometheus files) in every
run at 8 or more connections: ``balance`` is the smallest share any worker had in any round.

Throughput on a shared machine moves with whatever else runs; the CPU time each server's
processes spend per request (from /proc, master and workers) moves much less, so the table
gives both: ``cpu ratio`` is naive's CPU per request over the service's (above 1: the service
does the same work with less CPU).

``--floor`` adds bench/floor_app.py: the naive app plus every feature the service keeps on
(request id, log line, metrics, the MNIST recipe, the verdict, validation), each at its
cheapest, under the service's worker.  Its columns (ratios to the naive app, as the service's)
say how fast Flask can be with those features at all: naive -> floor is their cost, floor ->
service the cost of the service's structure.

``--baseline DIR`` runs another server, the service from another checkout (an earlier commit),
in the same rounds, so that a change is measured against its own past under the same load; the
table then also gives that server's CPU per request and its ratio to this checkout's.

Needs wrk (Debian: apt-get install wrk).  Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client.multiprocess import MultiProcessCollector

from bench.serve import ROOT, Server, free_port, process_table, running
from bench.serve_payloads import drawn_digit, mnist_like_batch, npy_bytes, png_bytes

MODEL = "mnist_mlp"

# wrk's Lua: the body comes from a file (binary safe); done() prints one JSON line.
WRK_SCRIPT = """
local path, content_type, method = os.getenv("BENCH_BODY"), os.getenv("BENCH_TYPE"), os.getenv("BENCH_METHOD")
wrk.method = method
if path ~= "" then
  local file = io.open(path, "rb"); wrk.body = file:read("*a"); file:close()
  wrk.headers["Content-Type"] = content_type
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %f, "socket_errors": %d, "non_2xx": %d, "p50_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass(frozen=True)
class Kind:
    name: str
    what: str
    method: str
    path: str
    content_type: str
    body: bytes
    images: int
    concurrency: tuple[int, ...]


def kinds() -> list[Kind]:
    """The request kinds of issue 10, each with the connection counts it is timed at."""
    mnist_digit = mnist_like_batch(1)  # [1, 1, 28, 28] uint8, light ink on black like MNIST
    batch = mnist_like_batch(64)
    as_float = lambda pixels: (pixels / np.float32(255)).astype(np.float32).tolist()  # noqa: E731
    numbers = f"/models/{MODEL}/predict"
    return [
        Kind("png28", "one 28x28 PNG", "POST", "/predict", "image/png",
             png_bytes(drawn_digit(7, 28).point(lambda v: 255 - v)), 1, (1, 8, 32)),
        Kind("png280", "one 280x280 RGB PNG", "POST", "/predict", "image/png",
             png_bytes(drawn_digit(7, 280).convert("RGB")), 1, (1, 8, 32)),
        Kind("json1", "one image as JSON", "POST", numbers, "application/json",
             json.dumps({"inputs": as_float(mnist_digit)}).encode(), 1, (1, 8, 32)),
        Kind("json64", "64 images as JSON", "POST", numbers, "application/json",
             json.dumps({"inputs": as_float(batch)}).encode(), 64, (8,)),
        Kind("npy64", "64 images as uint8 .npy", "POST", numbers, "application/x-npy", npy_bytes(batch), 64, (8,)),
        Kind("health", "GET /healthz", "GET", "/healthz", "", b"", 0, (1, 8)),
    ]


def run_wrk(port: int, kind: Kind, connections: int, seconds: float, workdir: Path) -> dict:
    body_file = workdir / f"{kind.name}.body"
    if kind.body and not body_file.exists():
        body_file.write_bytes(kind.body)
    command = ["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
               "-s", str(workdir / "bench.lua"), f"http://127.0.0.1:{port}{kind.path}"]
    env = {**os.environ, "BENCH_BODY": str(body_file) if kind.body else "", "BENCH_TYPE": kind.content_type,
           "BENCH_METHOD": kind.method}
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["per_second"] = result["requests"] / result["seconds"]
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its live descendants."""
    table = process_table()
    family = {pid}
    while grown := {child for child, process in table.items() if process.parent in family} - family:
        family |= grown
    return sum(table[member].cpu_seconds for member in family if member in table)


def requests_by_worker(multiproc_dir: Path) -> dict[int, float]:
    """serving_requests_total of each worker, from its own prometheus_client file."""
    totals = {}
    for path in multiproc_dir.glob("counter_*.db"):
        pid = int(re.search(r"_(\d+)\.db$", path.name).group(1))
        count = 0.0
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            count += sum(s.value for s in metric.samples if s.name == "serving_requests_total")
        totals[pid] = count
    return totals


def check_answers(ports: list[int]) -> None:
    """Every server answers 200 to every kind (wrk only counts statuses)."""
    import http.client

    for kind in kinds():
        for port in ports:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Content-Type": kind.content_type} if kind.body else {}
            connection.request(kind.method, kind.path, body=kind.body or None, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            connection.close()
            if response.status != 200:
                sys.exit(f"{kind.name} on port {port}: HTTP {response.status}: {answer[:300]!r}")


def main(argv: list[str] | None = None) -> None:
    all_kinds = {kind.name: kind for kind in kinds()}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (5)")
    parser.add_argument("--kinds", nargs="+", default=list(all_kinds), choices=list(all_kinds))
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="service environment")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument (service)")
    parser.add_argument("--json", type=Path, help="also write every run here (bench/results/ is git-ignored)")
    parser.add_argument("--floor", action="store_true", help="also run bench/floor_app.py (see above)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run the service from this checkout (an earlier commit, e.g. from git archive)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")

    repository = str(args.repository.resolve())
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        (workdir / "bench.lua").write_text(WRK_SCRIPT)
        multiproc = workdir / "prometheus"
        multiproc.mkdir()
        service_env = {"MODEL_REPOSITORY": repository, "WORKERS": "2", "INTRA_OP_THREADS": "1", "LOG_LEVEL": "INFO",
                       "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "REFRESH_INTERVAL": "2"}
        service_env.update(item.split("=", 1) for item in args.env)
        servers = {
            "service": Server("service", "service:create_app()",
                              ["--config", "gunicorn.conf.py", *args.gunicorn_arg], service_env),
            "naive": Server("naive", "bench.naive_app:create_app()", ["--workers", "2"],
                            {"MODEL_REPOSITORY": repository, "OMP_NUM_THREADS": "1"}),
        }
        if args.floor:
            (workdir / "prometheus-floor").mkdir()
            servers["floor"] = Server("floor", "bench.floor_app:create_app()", ["--config", "gunicorn.conf.py"],
                                      {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus-floor")})
        if args.baseline:
            (workdir / "prometheus-baseline").mkdir()
            servers["baseline"] = Server(
                "baseline", "service:create_app()", ["--config", "gunicorn.conf.py", *args.gunicorn_arg],
                {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus-baseline")},
                cwd=args.baseline.resolve())
        ports = {name: free_port() for name in servers}
        processes = {name: stack.enter_context(running(server, ports[name], workdir))
                     for name, server in servers.items()}
        check_answers(list(ports.values()))

        runs = []
        for round_index in range(args.rounds):
            order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
            for kind in (all_kinds[name] for name in args.kinds):
                for connections in kind.concurrency:
                    for name in order:
                        before = requests_by_worker(multiproc) if name == "service" else {}
                        cpu_before = cpu_seconds(processes[name].pid)
                        result = run_wrk(ports[name], kind, connections, args.duration, workdir)
                        result["cpu_us"] = (cpu_seconds(processes[name].pid) - cpu_before) / max(result["requests"], 1) * 1e6
                        if name == "service" and connections >= 8:
                            after = requests_by_worker(multiproc)
                            done = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
                            total = sum(done.values()) or 1.0
                            result["worker_shares"] = sorted(round(count / total, 3) for count in done.values())
                        runs.append({"round": round_index, "server": name, "kind": kind.name,
                                     "connections": connections, **result})
                        shares = result.get("worker_shares", "")
                        print(f"  round {round_index} {name:<8} {kind.name:<7} c{connections:<3}"
                              f" {result['per_second']:9.1f}/s {result['cpu_us']:7.0f} us cpu/request"
                              f"  errors {result['socket_errors'] + result['non_2xx']} {shares}", file=sys.stderr)

    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.rounds} interleaved rounds of "
          f"{args.duration:g} s per cell, medians; service: gunicorn.conf.py {' '.join(args.gunicorn_arg)} "
          f"{' '.join(args.env)}; naive: bench/naive_app.py on 2 sync workers\n")
    baseline, floor = "baseline" in servers, "floor" in servers
    print(f"{'request':<26} {'conns':>5} {'service/s':>10} {'naive/s':>10} {'ratio':>6}   "
          f"{'cpu us/req':>10} {'naive':>6} {'cpu ratio':>9} {'errors':>6}  "
          + (f"{'floor/s':>9} {'floor ratio':>11} {'floor cpu':>9} {'floor cpu ratio':>15}  " if floor else "")
          + (f"{'baseline cpu':>12} {'x service':>9}  " if baseline else "") + "balance")
    for kind in (all_kinds[name] for name in args.kinds):
        for connections in kind.concurrency:
            cell = [run for run in runs if run["kind"] == kind.name and run["connections"] == connections]
            rate = {name: statistics.median(r["per_second"] for r in cell if r["server"] == name) for name in servers}
            cpu = {name: statistics.median(r["cpu_us"] for r in cell if r["server"] == name) for name in servers}
            errors = sum(r["socket_errors"] + r["non_2xx"] for r in cell)
            shares = [min(r["worker_shares"]) for r in cell if "worker_shares" in r]
            unit = max(kind.images, 1)
            label = f"{kind.what}{' (images/s)' if kind.images > 1 else ''}"
            print(f"{label:<26} {connections:>5} {rate['service'] * unit:>10,.0f} {rate['naive'] * unit:>10,.0f} "
                  f"{rate['service'] / rate['naive']:>6.2f}   {cpu['service']:>10.0f} {cpu['naive']:>6.0f} "
                  f"{cpu['naive'] / cpu['service']:>9.2f} {errors:>6}  "
                  + (f"{rate['floor'] * unit:>9,.0f} {rate['floor'] / rate['naive']:>11.2f} {cpu['floor']:>9.0f} "
                     f"{cpu['naive'] / cpu['floor']:>15.2f}  " if floor else "")
                  + (f"{cpu['baseline']:>12.0f} {cpu['baseline'] / cpu['service']:>9.2f}  " if baseline else "")
                  + (f"min worker share {min(shares):.0%}" if shares else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
