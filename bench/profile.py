"""Where a request's time goes: py-spy on a live worker while wrk sends one request kind.

    python -m bench.profile                         # one 28x28 PNG, 1 connection, 10 s
    python -m bench.profile --kind png280 --connections 8 --top 30
    python -m bench.profile --kind json64 --flamegraph bench/results/json64.svg

Starts the service under gunicorn (gunicorn.conf.py) with ONE worker, so that every request is
seen by the process being sampled, drives it with wrk (see bench/compare.py for the kinds),
records it with ``py-spy record --format raw`` (samples of threads holding or waiting for
the CPU; idle threads are left out) and prints the share of samples per library and the top
functions by inclusive and by own time.  py-spy needs ptrace rights (root, or
``kernel.yama.ptrace_scope=0``).  Needs wrk and py-spy (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.compare import WRK_SCRIPT, kinds, run_wrk
from bench.serve import ROOT, Server, free_port, running, worker_pids

# Which library a frame belongs to, by the path py-spy prints (first match wins).
LIBRARIES = [
    ("onnxruntime", "onnxruntime/"),
    ("Pillow", "PIL/"),
    ("numpy", "numpy/"),
    ("gunicorn", "gunicorn/"),
    ("flask/werkzeug", ("flask/", "werkzeug/")),
    ("prometheus_client", "prometheus_client/"),
    ("logging", "logging/"),
    ("json", ("json/", "orjson")),
    ("service.imaging", "service/imaging.py"),
    ("service (other)", "service/"),
    ("threading/selectors/socket", ("threading.py", "selectors.py", "socket.py", "concurrent/", "queue.py")),
]
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")
# Leaf frames of a thread waiting for work rather than doing it (py-spy's idle detection
# misses some lock waits): an idle executor thread, a poller with nothing to do.
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py)", "EpollSelector.select (selectors.py)",
               "Condition.wait (threading.py)", "Event.wait (threading.py)")


def library_of(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    for name, patterns in LIBRARIES:
        if any(pattern in path for pattern in ((patterns,) if isinstance(patterns, str) else patterns)):
            return name
    return "other"


def summarise(raw: str, top: int) -> str:
    """Per-library own time, then the top functions by inclusive and by own samples."""
    inclusive, own, libraries = Counter(), Counter(), Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1] in IDLE_LEAVES:
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        libraries[library_of(frames[-1])] += count
    if not total:
        return "no samples (is py-spy allowed to attach?)"
    lines = [f"{total} samples", "", "own time by library:"]
    lines += [f"  {share / total:6.1%}  {name}" for name, share in libraries.most_common()]
    lines += ["", f"top {top} functions, inclusive (the function and what it calls):"]
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in inclusive.most_common(top)]
    lines += ["", f"top {top} functions, own time:"]
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    all_kinds = {kind.name: kind for kind in kinds()}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--kind", default="png28", choices=list(all_kinds))
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds sampled (10)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (250)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="service environment")
    parser.add_argument("--gunicorn-arg", action="append", default=[], help="extra gunicorn argument")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL (py-spy --gil)")
    parser.add_argument("--flamegraph", type=Path, help="also write py-spy's flame graph (SVG) here")
    args = parser.parse_args(argv)
    for tool in ("wrk", "py-spy"):
        if shutil.which(tool) is None and not (Path(sys.executable).parent / tool).exists():
            sys.exit(f"{tool} is not installed")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    kind = all_kinds[args.kind]
    env = {"MODEL_REPOSITORY": str(args.repository.resolve()), "WORKERS": "1", "INTRA_OP_THREADS": "1",
           "LOG_LEVEL": "INFO"}
    env.update(item.split("=", 1) for item in args.env)
    server = Server("service", "service:create_app()", ["--config", "gunicorn.conf.py", *args.gunicorn_arg], env)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp, running(server, port, Path(tmp)) as process:
        workdir = Path(tmp)
        (workdir / "bench.lua").write_text(WRK_SCRIPT)
        (worker,) = worker_pids(process.pid)
        load = threading.Thread(target=run_wrk, args=(port, kind, args.connections, args.seconds + 3, workdir))
        load.start()
        time.sleep(1.5)  # warm-up before sampling
        raw = workdir / "profile.txt"
        record = [py_spy, "record", "--pid", str(worker), "--duration", str(int(args.seconds)), "--rate",
                  str(args.rate), "--nolineno", "--nonblocking", *(["--gil"] if args.gil else [])]
        subprocess.run([*record, "--format", "raw", "--output", str(raw)], check=True, capture_output=True)
        load.join()
        if args.flamegraph:
            load = threading.Thread(target=run_wrk, args=(port, kind, args.connections, args.seconds + 2, workdir))
            load.start()
            time.sleep(1)
            subprocess.run([*record, "--output", str(args.flamegraph)], check=True, capture_output=True)
            load.join()
        print(f"{kind.what}, {args.connections} connection(s), 1 worker, {args.seconds:g} s at {args.rate} Hz; "
              f"{' '.join(args.gunicorn_arg) or 'gunicorn.conf.py'} {' '.join(args.env)}\n")
        print(summarise(raw.read_text(), args.top))


if __name__ == "__main__":
    main()
