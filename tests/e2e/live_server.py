"""A real gunicorn serving the service for a test, with helpers to load it and look inside.

``serving(repository, workdir, **environment)`` starts ``python -m gunicorn -c gunicorn.conf.py
"service:create_app()"`` on a free port with two workers, waits until /readyz answers 200
(tolerating refused connections and read timeouts while it starts, for up to 90 s), and stops
it with SIGTERM (then SIGKILL) at the end.  It yields once every worker has logged "models
loaded", so that connections made by the test can reach any of them.
"""

from __future__ import annotations

import contextlib
import http.client
import io
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

import numpy as np
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 90.0


@dataclass
class LiveServer:
    port: int
    process: subprocess.Popen
    log_path: Path

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: status, headers, body."""
        connection = self.connection(timeout)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def workers(self) -> list[int]:
        """The master's live child processes (the gunicorn workers)."""
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == self.process.pid and fields[0] != "Z":
                        children.append(int(entry.name))
        return sorted(children)

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def log_tail(self) -> str:
        return self.log_path.read_text()[-4000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(repository: Path, workdir: Path, **environment: str) -> Iterator[LiveServer]:
    port = free_port()
    multiproc = workdir / f"prometheus-{port}"
    multiproc.mkdir()
    log_path = workdir / f"gunicorn-{port}.log"
    env = {**os.environ, "MODEL_REPOSITORY": str(repository), "HOST": "127.0.0.1", "PORT": str(port),
           "WORKERS": "2", "INTRA_OP_THREADS": "1", "REFRESH_INTERVAL": "0", "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
           **environment}
    env.pop("ADMIN_TOKEN", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(port, process, log_path)
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if server.request("GET", "/readyz", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"gunicorn not ready after {STARTUP_DEADLINE:.0f} s:\n{server.log_tail()}")
            time.sleep(0.2)
        # Every worker serving: the first answer may come from one while another still loads.
        while len({line["pid"] for line in server.log_lines() if line.get("message") == "models loaded"}) \
                < int(env["WORKERS"]):
            if time.monotonic() > deadline:
                raise AssertionError(f"not every worker loaded its models:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def photo(width: int = 1600, height: int = 1200) -> bytes:
    """A JPEG like a phone photo of a "7" on paper, with noise: tens of milliseconds of work."""
    rng = np.random.default_rng(0)
    paper = Image.new("L", (width, height), 210)
    ImageDraw.Draw(paper).line([(width * 0.3, height * 0.2), (width * 0.7, height * 0.2), (width * 0.45, height * 0.85)],
                               fill=40, width=max(8, width // 40))
    pixels = np.asarray(paper, dtype=np.float32) + rng.normal(0, 6, (height, width))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def metrics_text(server: LiveServer) -> str:
    return server.request("GET", "/metrics")[2].decode()
