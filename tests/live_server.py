"""Real gunicorn for tests: ``python -m gunicorn -c gunicorn.conf.py "service:create_app()"`` on a free
loopback port, waited for until every worker is ready, always stopped with SIGTERM (then SIGKILL).

Shared by tests/e2e, tests/browser and tests/test_readme_examples.py (tests/conftest.py holds the session-wide
server they share); imported by path like service_fixtures, not as a package.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_MODELS = REPO_ROOT / "models"
IMAGE_MODEL = "mnist_mlp"  # the committed image model the live tests draw digits for
# A loaded 2-core machine can take tens of seconds to import onnxruntime and load seven models
# in two workers: the deadline is generous, and every attempt may be refused or time out.
READY_DEADLINE_SECONDS = 180
ATTEMPT_TIMEOUT_SECONDS = 5
# The admin token of the session's server, which README.md's admin example reads from $ADMIN_TOKEN.
README_ADMIN_TOKEN = "readme-example-token"


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path
    repository: Path

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, process: subprocess.Popen, log_path: Path, what: str,
               deadline_seconds: float = READY_DEADLINE_SECONDS) -> None:
    """Call ``ready()`` until it is true; a refused connection or a read timeout is "not yet"."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):  # refused, reset, read timeout, ...
            if ready():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {deadline_seconds} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)


def gunicorn_environment(repository: Path, port: int, **environment: str) -> dict[str, str]:
    env = {
        **os.environ,
        "MODEL_REPOSITORY": str(repository),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        "REFRESH_INTERVAL": "0.5",
        **environment,
    }
    if "ADMIN_TOKEN" not in environment:
        env.pop("ADMIN_TOKEN", None)  # the caller's own token must not switch the admin endpoints on
    return env


@contextlib.contextmanager
def gunicorn(repository: Path, workdir: Path, ready_status: int = 200, **environment: str) -> Iterator[Server]:
    """Start gunicorn on ``repository``, wait until /readyz answers ``ready_status``, and always stop it.

    ``ready_status=503`` waits for a server that is up but, by design, not ready (a broken repository).
    """
    port = free_port()
    log_path = workdir / f"gunicorn-{port}.log"
    env = gunicorn_environment(repository, port, **environment)
    if "PROMETHEUS_MULTIPROC_DIR" not in environment:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / f"prometheus-{port}")
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log_path, repository)
    try:
        wait_until(
            lambda: requests.get(f"{server.url}/readyz", timeout=ATTEMPT_TIMEOUT_SECONDS).status_code == ready_status,
            process, log_path, "gunicorn not ready",
        )  # fmt: skip
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
