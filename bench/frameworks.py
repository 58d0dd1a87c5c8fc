"""JSON predictions from the service, the naive app, TorchServe and BentoML, side by side, with wrk.

    python -m bench.frameworks                        # 3 rounds x 3 s per cell, about 4 minutes
    python -m bench.frameworks --rounds 2 --without torchserve

Issue 10 sets two targets against other serving systems: one image as JSON at least 2x
TorchServe, 64 images as JSON at least 1.5x BentoML.  Every server runs the same model file in
onnxruntime with two workers and one onnxruntime thread per worker, and answers
``{"inputs": [...]}`` with ``{"outputs": [...]}``:

- service: gunicorn.conf.py, every feature on (as in bench/compare.py);
- naive: bench/naive_app.py on gunicorn's sync workers;
- torchserve: TorchServe with its defaults (Java front end, its logging), the model archived
  with bench/torchserve_handler.py, 2 workers, batch size 1;
- bentoml: ``bentoml serve bench.bentoml_service:MnistMlp`` (2 workers).

Rounds interleave the servers (their order alternating), so a change in machine load hits all
of them; the table gives medians, the service's ratio to each, and the CPU time each server's
process tree spent per request.  A server whose framework is not installed is left out with a
note.  TorchServe needs Java and ``pip install torchserve torch-model-archiver`` (its Python
worker imports torch: install it where torch is, or pass ``--torchserve-path DIR`` holding the
two packages); BentoML is best kept in a virtualenv of its own (``--bentoml PATH`` to its
``bentoml``; its dependencies pin versions the service's do not).  Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from bench.compare import MODEL, WRK_SCRIPT, cpu_seconds, kinds, run_wrk
from bench.serve import ROOT, Server, free_port, newest_model_file, running, wait_until_ready

KINDS = ("json1", "json64")


@contextmanager
def started(name: str, command: list[str], env: dict, ready_path: str, port: int, log_dir: Path, cwd: Path = ROOT,
            timeout: float = 120):
    """A server started by ``command`` in its own process group, once ``ready_path`` answers 200."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_until_ready(port, process, log_path, timeout, path=ready_path)
        yield process
    finally:
        # The whole group, and then whatever is left of it: TorchServe's Java front end outlives its launcher.
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1)
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:  # nothing left in it
        pass


def torchserve(port: int, model_file: Path, workdir: Path, packages: Path | None):
    env = {"OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    if packages:
        env["PYTHONPATH"] = str(packages)
    store = workdir / "torchserve-store"
    store.mkdir()
    subprocess.run([sys.executable, "-m", "model_archiver.model_packaging", "--model-name", MODEL, "--version", "1",
                    "--serialized-file", str(model_file), "--handler", str(ROOT / "bench" / "torchserve_handler.py"),
                    "--export-path", str(store)], env={**os.environ, **env}, check=True, capture_output=True)
    config = workdir / "torchserve.properties"
    config.write_text(f"inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{free_port()}\n"
                      f"metrics_address=http://127.0.0.1:{free_port()}\ndefault_workers_per_model=2\n"
                      "install_py_dep_per_model=false\n")
    command = [sys.executable, "-m", "ts.model_server", "--start", "--foreground", "--ncs", "--disable-token-auth",
               "--model-store", str(store), "--models", f"{MODEL}={MODEL}.mar", "--ts-config", str(config)]
    logs = {"LOG_LOCATION": str(workdir / "torchserve-logs"), "METRICS_LOCATION": str(workdir / "torchserve-logs")}
    return started("torchserve", command, {**env, **logs}, "/ping", port, workdir, cwd=workdir)


def bentoml(port: int, model_file: Path, workdir: Path, executable: str):
    command = [executable, "serve", "bench.bentoml_service:MnistMlp", "--port", str(port), "--host", "127.0.0.1"]
    env = {"MODEL_FILE": str(model_file), "BENTOML_DO_NOT_TRACK": "True", "OMP_NUM_THREADS": "1",
           "BENTOML_HOME": str(workdir / "bentoml")}
    return started("bentoml", command, env, "/readyz", port, workdir)


def outputs(port: int, path: str, body: bytes) -> np.ndarray:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    if response.status != 200:
        sys.exit(f"POST {path} on port {port}: HTTP {response.status}: {answer[:300]!r}")
    return np.asarray(json.loads(answer)["outputs"], dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "models")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run (3)")
    parser.add_argument("--torchserve-path", type=Path, help="a folder holding torchserve and torch-model-archiver")
    parser.add_argument("--bentoml", default=shutil.which("bentoml"), help="the bentoml executable (default: on PATH)")
    parser.add_argument("--without", nargs="*", default=[], choices=["torchserve", "bentoml"])
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    model_file = newest_model_file(args.repository).resolve()
    repository = str(args.repository.resolve())
    paths = {"service": f"/models/{MODEL}/predict", "naive": f"/models/{MODEL}/predict",
             "torchserve": f"/predictions/{MODEL}", "bentoml": "/predict"}
    notes = []
    if "torchserve" not in args.without:
        probe_env = {**os.environ, "PYTHONPATH": str(args.torchserve_path or "")}
        found = subprocess.run([sys.executable, "-c", "import ts, model_archiver"], env=probe_env, capture_output=True)
        if found.returncode or shutil.which("java") is None:
            notes.append("torchserve left out: needs Java and the torchserve and torch-model-archiver packages")
            args.without.append("torchserve")
    if "bentoml" not in args.without and not args.bentoml:
        notes.append("bentoml left out: no bentoml executable (--bentoml PATH)")
        args.without.append("bentoml")

    with tempfile.TemporaryDirectory(prefix="bench-frameworks-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        (workdir / "bench.lua").write_text(WRK_SCRIPT)
        (workdir / "prometheus").mkdir()
        ports, processes = {}, {}
        gunicorn_servers = {
            "service": Server("service", "service:create_app()", ["--config", "gunicorn.conf.py"],
                              {"MODEL_REPOSITORY": repository, "WORKERS": "2", "INTRA_OP_THREADS": "1", "LOG_LEVEL": "INFO",
                               "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"), "REFRESH_INTERVAL": "2"}),
            "naive": Server("naive", "bench.naive_app:create_app()", ["--workers", "2"],
                            {"MODEL_REPOSITORY": repository, "OMP_NUM_THREADS": "1"}),
        }
        for name, server in gunicorn_servers.items():
            ports[name] = free_port()
            processes[name] = stack.enter_context(running(server, ports[name], workdir))
        if "torchserve" not in args.without:
            ports["torchserve"] = free_port()
            processes["torchserve"] = stack.enter_context(
                torchserve(ports["torchserve"], model_file, workdir, args.torchserve_path))
        if "bentoml" not in args.without:
            ports["bentoml"] = free_port()
            processes["bentoml"] = stack.enter_context(bentoml(ports["bentoml"], model_file, workdir, args.bentoml))

        request_kinds = [kind for kind in kinds() if kind.name in KINDS]
        for kind in request_kinds:  # the same answers everywhere, before anything is timed
            reference = outputs(ports["service"], paths["service"], kind.body)
            for name in ports:
                if not np.allclose(outputs(ports[name], paths[name], kind.body), reference, atol=1e-5):
                    sys.exit(f"{name} answers {kind.name} differently from the service")

        runs = []
        for round_index in range(args.rounds):
            order = list(ports) if round_index % 2 == 0 else list(reversed(ports))
            for kind in request_kinds:
                for connections in kind.concurrency:
                    for name in order:
                        cpu_before = cpu_seconds(processes[name].pid)
                        result = run_wrk(ports[name], dataclasses.replace(kind, path=paths[name]), connections,
                                         args.duration, workdir)
                        result["cpu_us"] = (cpu_seconds(processes[name].pid) - cpu_before) / max(result["requests"], 1) * 1e6
                        runs.append({"server": name, "kind": kind.name, "connections": connections, **result})
                        print(f"  round {round_index} {name:<10} {kind.name:<7} c{connections:<3} "
                              f"{result['per_second']:9.1f}/s {result['cpu_us']:7.0f} us cpu/request  errors "
                              f"{result['socket_errors'] + result['non_2xx']}", file=sys.stderr)

    others = [name for name in ports if name != "service"]
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.rounds} interleaved rounds of "
          f"{args.duration:g} s per cell, medians; {model_file.relative_to(ROOT) if model_file.is_relative_to(ROOT) else model_file}")
    for note in notes:
        print(note)
    print(f"\n{'request':<20} {'conns':>5} " + " ".join(f"{name + '/s':>12}" for name in ports) + "  "
          + " ".join(f"{'x ' + name:>12}" for name in others) + "  cpu us/request " + " / ".join(ports) + "  errors")
    for kind in request_kinds:
        for connections in kind.concurrency:
            cell = [run for run in runs if run["kind"] == kind.name and run["connections"] == connections]
            rate = {name: statistics.median(r["per_second"] for r in cell if r["server"] == name) * max(kind.images, 1)
                    for name in ports}
            cpu = {name: statistics.median(r["cpu_us"] for r in cell if r["server"] == name) for name in ports}
            errors = sum(r["socket_errors"] + r["non_2xx"] for r in cell)
            label = f"{kind.what}{' (img/s)' if kind.images > 1 else ''}"
            print(f"{label:<20} {connections:>5} " + " ".join(f"{rate[name]:>12,.0f}" for name in ports) + "  "
                  + " ".join(f"{rate['service'] / rate[name]:>12.2f}" for name in others) + "  "
                  + " / ".join(f"{cpu[name]:.0f}" for name in ports) + f"  {errors}")


if __name__ == "__main__":
    main()
