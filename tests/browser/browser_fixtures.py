"""Helpers for the browser tests: the gunicorn server, chromium's settings, what a page recorded.

The server is ``python -m gunicorn -c gunicorn.conf.py "service:create_app()"`` on 127.0.0.1 with
the committed models; the browser is /usr/bin/chromium (apt), headless, with every background
service that could reach the network turned off.  Playwright never downloads a browser here.
Every page records its console errors, uncaught exceptions and the requests it makes, and
refuses any request that is not to the loopback server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_MODELS = REPO_ROOT / "models"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = "127.0.0.1"

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def gunicorn(repository: Path, workdir: Path, wait_for: str = "/readyz") -> Iterator[str]:
    """gunicorn on a free loopback port until ``wait_for`` answers 200 (or 503 for a broken repository)."""
    port = free_port()
    multiproc = workdir / f"prometheus-{port}"
    multiproc.mkdir()
    log_path = workdir / f"gunicorn-{port}.log"
    env = {
        **os.environ,
        "MODEL_REPOSITORY": str(repository),
        "HOST": LOOPBACK,
        "PORT": str(port),
        "WORKERS": "1",
        "REFRESH_INTERVAL": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    env.pop("ADMIN_TOKEN", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            # Refused connections and read timeouts are both normal while the worker starts.
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + wait_for, timeout=5).status_code in (200, 503):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer {wait_for} within 90 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Recorded:
    """What one page did that a user would not see: console errors, exceptions, requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
