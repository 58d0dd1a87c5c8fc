"""Do both workers work?  8 kept-alive connections (wrk), trial after trial.

    python -m bench.balance                          # 6 trials of 3 s, one 28x28 PNG per request
    python -m bench.balance --kind json64 --trials 10
    python -m bench.balance --gunicorn-arg=--worker-class=gthread --env WORKER_THREADS=4   # as before

Starts the service (gunicorn.conf.py, 2 workers, every feature on) and, in each trial, opens
--connections new kept-alive connections with wrk for --seconds.  For every trial it prints how
many connections each worker held (from ``ss``, half-way through) and each worker's share of
the requests (from its own Prometheus file).  gthread workers once left every connection on
one worker in 3 trials of 4; the target is at least 35 % of the requests for each worker in
every trial.  Needs wrk and ss.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.compare import WRK_SCRIPT, kinds, requests_by_worker, run_wrk
from bench.serve import ROOT, Server, free_port, running, worker_pids


def connections_by_worker(port: int, workers: list[int]) -> dict[int, int]:
    listing = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
    return {pid: listing.count(f"pid={pid},") for pid in workers}


def main(argv: list[str] | None = None) -> None:
    all_kinds = {kind.name: kind for kind in kinds()}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--kind", default="png28", choices=list(all_kinds))
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="server environment")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument")
    args = parser.parse_args(argv)

    kind = all_kinds[args.kind]
    with tempfile.TemporaryDirectory(prefix="bench-balance-") as tmp:
        workdir = Path(tmp)
        (workdir / "bench.lua").write_text(WRK_SCRIPT)
        multiproc = workdir / "prometheus"
        multiproc.mkdir()
        env = {"MODEL_REPOSITORY": str(args.repository.resolve()), "WORKERS": "2", "INTRA_OP_THREADS": "1",
               "LOG_LEVEL": "INFO", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
        env.update(item.split("=", 1) for item in args.env)
        server = Server("service", "service:create_app()", ["--config", "gunicorn.conf.py", *args.gunicorn_arg], env)
        port = free_port()
        with running(server, port, workdir) as process:
            workers = worker_pids(process.pid)
            time.sleep(2)  # both workers up, not only the first that answered /readyz
            print(f"{kind.what}, {args.connections} kept-alive connections, {args.seconds:g} s per trial, "
                  f"{' '.join(args.gunicorn_arg) or 'gunicorn.conf.py'} {' '.join(args.env)}; "
                  f"load average {os.getloadavg()[0]:.1f}\n")
            print(f"{'trial':>5}  {'connections per worker':<24} {'requests per worker':<22} smallest share")
            smallest = []
            for trial in range(1, args.trials + 1):
                before = requests_by_worker(multiproc)
                load = threading.Thread(target=run_wrk, args=(port, kind, args.connections, args.seconds, workdir))
                load.start()
                time.sleep(args.seconds / 2)
                held = connections_by_worker(port, workers)
                load.join()
                after = requests_by_worker(multiproc)
                done = [after.get(pid, 0.0) - before.get(pid, 0.0) for pid in workers]
                share = min(done) / max(sum(done), 1.0)
                smallest.append(share)
                print(f"{trial:>5}  {' / '.join(str(held[pid]) for pid in workers):<24} "
                      f"{' / '.join(f'{count:.0f}' for count in done):<22} {share:.0%}")
    print(f"\nsmallest share of any worker in any trial: {min(smallest):.0%} (target: 35 %)")


if __name__ == "__main__":
    main()
