"""The real thing: gunicorn with two workers on 127.0.0.1, the committed models, HTTP requests.

Each test here talks to ``python -m gunicorn -c gunicorn.conf.py "service:create_app()"`` run as
a subprocess on a free port, with a copy of the committed model repository (so that tests may
add versions without touching it).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "service"))
from service_fixtures import draw_digit, encode, metric_value  # noqa: E402

from service.manifest import MANIFEST_FILENAME, read_manifest  # noqa: E402

IMAGE_MODEL = "mnist_mlp"
COMMITTED_MODELS = REPO_ROOT / "models"

pytestmark = pytest.mark.skipif(
    not (COMMITTED_MODELS / IMAGE_MODEL).is_dir(), reason=f"no committed {IMAGE_MODEL} in {COMMITTED_MODELS}"
)


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

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


@contextlib.contextmanager
def gunicorn(repository: Path, workdir: Path, **environment: str) -> Iterator[Server]:
    """Start gunicorn, wait for /readyz, and always stop it with SIGTERM (then SIGKILL)."""
    port = free_port()
    multiproc = workdir / f"prometheus-{port}"
    multiproc.mkdir()
    log_path = workdir / f"gunicorn-{port}.log"
    env = {
        **os.environ,
        "MODEL_REPOSITORY": str(repository),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        "REFRESH_INTERVAL": "0.5",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        **environment,
    }
    env.pop("ADMIN_TOKEN", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn not ready after 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def repository(workdir) -> Path:
    copy = workdir / "models"
    shutil.copytree(COMMITTED_MODELS, copy, ignore=shutil.ignore_patterns(".tmp-*"))
    return copy


@pytest.fixture(scope="module")
def server(repository, workdir) -> Iterator[Server]:
    with gunicorn(repository, workdir) as running:
        yield running


def test_raw_png_and_multipart_batch(server):
    seven = encode(draw_digit("7", mode="RGB"))
    response = requests.post(f"{server.url}/predict", data=seven, headers={"Content-Type": "image/png"}, timeout=10)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["label"] == "7" and result["model"] == IMAGE_MODEL
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4
    assert response.headers["X-Request-ID"]

    digits = ["1", "7", "0"]
    files = [("images", (f"{d}.png", io.BytesIO(encode(draw_digit(d))), "image/png")) for d in digits]
    batch = requests.post(f"{server.url}/predict", files=files, timeout=10)
    assert batch.status_code == 200, batch.text
    assert [r["label"] for r in batch.json()["results"]] == digits


def test_bad_input_over_http_leaves_the_workers_running(server):
    png = encode(draw_digit("7"))
    truncated = requests.post(f"{server.url}/predict", data=png[:200], headers={"Content-Type": "image/png"})
    assert truncated.status_code == 422 and truncated.json()["error"]["code"] == "invalid_image"
    too_big = requests.post(
        f"{server.url}/predict", data=b"\0" * (21 * 1024 * 1024), headers={"Content-Type": "image/png"}
    )
    assert too_big.status_code == 413
    wrong_method = requests.get(f"{server.url}/predict")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    for _ in range(6):  # both workers still answer
        assert requests.post(f"{server.url}/predict", data=png, headers={"Content-Type": "image/png"}).ok


def test_each_worker_creates_its_own_sessions(server):
    loads = [
        line for line in server.log_lines()
        if line.get("logger") == "service.registry" and line.get("model") == IMAGE_MODEL
        and line.get("message", "").startswith("serving")
    ]
    pids = {line["pid"] for line in loads}
    assert len(pids) >= 2, loads
    assert server.process.pid not in pids  # nothing loaded in the master, before the fork



def test_metrics_add_up_across_workers(server):
    def scrape():
        return requests.get(f"{server.url}/metrics", timeout=5).text

    before = metric_value(scrape(), "serving_requests_total", endpoint="/predict", model=IMAGE_MODEL, status="200")
    png = encode(draw_digit("1"))
    for _ in range(20):  # new connection each time: gunicorn spreads them over the workers
        assert requests.post(f"{server.url}/predict", data=png, headers={"Content-Type": "image/png"}).ok
    for _ in range(4):  # whichever worker answers the scrape, it reports the whole service
        text = scrape()
        assert metric_value(text, "serving_requests_total", endpoint="/predict", model=IMAGE_MODEL, status="200") == before + 20
    served = requests.get(f"{server.url}/models/{IMAGE_MODEL}").json()["served_version"]
    assert metric_value(text, "serving_model_version", model=IMAGE_MODEL) == served


def publish_next_version(repository: Path, name: str) -> int:
    """Copy the newest version as version+1 (manifest updated), via a temp folder and a rename."""
    model_dir = repository / name
    newest = max(int(entry.name) for entry in model_dir.iterdir() if entry.name.isdigit())
    staging = model_dir / f".tmp-e2e-{newest + 1}"
    shutil.copytree(model_dir / str(newest), staging)
    manifest = read_manifest(staging / MANIFEST_FILENAME).model_copy(update={"version": newest + 1})
    (staging / MANIFEST_FILENAME).write_text(manifest.to_json())
    staging.rename(model_dir / str(newest + 1))
    return newest + 1


def test_a_new_version_is_served_without_failed_requests(server, repository):
    png = encode(draw_digit("7"))
    answers, failures, stop_asking = [], [], threading.Event()

    def keep_asking():
        while not stop_asking.is_set():
            try:
                response = requests.post(f"{server.url}/predict", data=png, headers={"Content-Type": "image/png"})
                (answers if response.ok else failures).append(response.json().get("version", response.text))
            except requests.RequestException as error:
                failures.append(repr(error))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        new_version = publish_next_version(repository, IMAGE_MODEL)
        deadline = time.monotonic() + 15
        while not (len(answers) > 10 and answers[-10:] == [new_version] * 10):
            assert time.monotonic() < deadline, f"still serving {answers[-10:]}, want {new_version}"
            time.sleep(0.1)
    finally:
        stop_asking.set()
        asker.join()
    assert failures == []


def test_sigterm_stops_gunicorn_cleanly(repository, workdir):
    """Workers exit without aborting (an onnxruntime import or session crossing the fork would)."""
    with gunicorn(repository, workdir) as running:
        assert requests.get(f"{running.url}/healthz").ok
        code = stop(running.process)
    log = running.log_path.read_text()
    assert code == 0, log[-3000:]
    for symptom in ("SIGABRT", "terminate called", "Traceback", "was sent SIGKILL"):
        assert symptom not in log, log[-3000:]
