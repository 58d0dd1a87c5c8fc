"""The real thing: gunicorn with two workers on 127.0.0.1, the committed models, HTTP requests.

Each test here talks to ``python -m gunicorn -c gunicorn.conf.py "service:create_app()"`` run as
a subprocess on a free port (tests/live_server.py), with a copy of the committed model repository.
Tests that only ask questions share the session's server (``live_server``, tests/conftest.py);
a test that adds versions or stops the server starts its own.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "service"))
from live_server import (  # noqa: E402
    COMMITTED_MODELS, IMAGE_MODEL, REPO_ROOT, free_port, gunicorn, gunicorn_environment, stop, wait_until,
)  # fmt: skip
from service_fixtures import draw_digit, encode, metric_value  # noqa: E402

from service.manifest import MANIFEST_FILENAME, read_manifest  # noqa: E402

# Generous: a loaded 2-core machine is slow, and a timeout here would be a false alarm.
TIMEOUT = 30

pytestmark = pytest.mark.skipif(
    not (COMMITTED_MODELS / IMAGE_MODEL).is_dir(), reason=f"no committed {IMAGE_MODEL} in {COMMITTED_MODELS}"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture
def own_repository(workdir, request) -> Path:
    copy = workdir / f"models-{request.node.name}"
    shutil.copytree(COMMITTED_MODELS, copy, ignore=shutil.ignore_patterns(".tmp-*"))
    return copy


def test_raw_png_and_multipart_batch(live_server):
    seven = encode(draw_digit("7", mode="RGB"))
    response = requests.post(
        f"{live_server.url}/predict", data=seven, headers={"Content-Type": "image/png"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["label"] == "7" and result["model"] == IMAGE_MODEL
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4
    assert response.headers["X-Request-ID"]

    digits = ["1", "7", "0"]
    files = [("images", (f"{d}.png", io.BytesIO(encode(draw_digit(d))), "image/png")) for d in digits]
    batch = requests.post(f"{live_server.url}/predict", files=files, timeout=TIMEOUT)
    assert batch.status_code == 200, batch.text
    assert [r["label"] for r in batch.json()["results"]] == digits


def test_bad_input_over_http_leaves_the_workers_running(live_server):
    url = f"{live_server.url}/predict"
    png = encode(draw_digit("7"))
    truncated = requests.post(url, data=png[:200], headers={"Content-Type": "image/png"}, timeout=TIMEOUT)
    assert truncated.status_code == 422 and truncated.json()["error"]["code"] == "invalid_image"
    too_big = requests.post(url, data=b"\0" * (21 * 1024 * 1024), headers={"Content-Type": "image/png"},
                            timeout=TIMEOUT)
    assert too_big.status_code == 413
    assert "the limit is 20971520 bytes (MAX_UPLOAD_BYTES)" in too_big.json()["error"]["message"]
    wrong_method = requests.get(url, timeout=TIMEOUT)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    for _ in range(6):  # both workers still answer
        assert requests.post(url, data=png, headers={"Content-Type": "image/png"}, timeout=TIMEOUT).ok


def test_each_worker_creates_its_own_sessions(live_server):
    def loading_pids() -> set[int]:
        return {
            line["pid"] for line in live_server.log_lines()
            if line.get("logger") == "service.registry" and line.get("model") == IMAGE_MODEL
            and line.get("message", "").startswith("serving")
        }  # fmt: skip

    # /readyz answered once one worker was ready; the other may still be loading.
    wait_until(lambda: len(loading_pids()) >= 2, live_server.process, live_server.log_path,
               "the second worker did not load its models")
    assert live_server.process.pid not in loading_pids()  # nothing loaded in the master, before the fork


def test_metrics_add_up_across_workers(live_server):
    def scrape():
        return requests.get(f"{live_server.url}/metrics", timeout=TIMEOUT).text

    before = metric_value(scrape(), "serving_requests_total", endpoint="/predict", model=IMAGE_MODEL, status="200")
    png = encode(draw_digit("1"))
    for _ in range(20):  # new connection each time: gunicorn spreads them over the workers
        assert requests.post(
            f"{live_server.url}/predict", data=png, headers={"Content-Type": "image/png"}, timeout=TIMEOUT
        ).ok
    for _ in range(4):  # whichever worker answers the scrape, it reports the whole service
        text = scrape()
        assert metric_value(text, "serving_requests_total", endpoint="/predict", model=IMAGE_MODEL, status="200") == before + 20
    served = requests.get(f"{live_server.url}/models/{IMAGE_MODEL}", timeout=TIMEOUT).json()["served_version"]
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


def test_a_new_version_is_served_without_failed_requests(own_repository, workdir):
    png = encode(draw_digit("7"))
    answers, failures, stop_asking = [], [], threading.Event()

    with gunicorn(own_repository, workdir) as server:

        def keep_asking():
            while not stop_asking.is_set():
                try:
                    response = requests.post(
                        f"{server.url}/predict", data=png, headers={"Content-Type": "image/png"}, timeout=TIMEOUT
                    )
                    (answers if response.ok else failures).append(response.json().get("version", response.text))
                except requests.RequestException as error:
                    failures.append(repr(error))

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            new_version = publish_next_version(own_repository, IMAGE_MODEL)
            deadline = time.monotonic() + 60
            while not (len(answers) > 10 and answers[-10:] == [new_version] * 10):
                assert time.monotonic() < deadline, f"still serving {answers[-10:]}, want {new_version}"
                time.sleep(0.1)
        finally:
            stop_asking.set()
            asker.join()
    assert failures == []


def test_sigterm_stops_gunicorn_cleanly_and_removes_its_metrics_folder(own_repository, workdir, tmp_path):
    """Workers exit without aborting (an onnxruntime import or session crossing the fork would), and
    the Prometheus folder gunicorn.conf.py made for itself (none was given) is gone afterwards."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with gunicorn(own_repository, workdir, TMPDIR=str(temporary), PROMETHEUS_MULTIPROC_DIR="") as running:
        assert requests.get(f"{running.url}/healthz", timeout=TIMEOUT).ok
        assert len(list(temporary.glob("prometheus-multiproc-*"))) == 1
        code = stop(running.process)
    log = running.log_path.read_text()
    assert code == 0, log[-3000:]
    for symptom in ("SIGABRT", "terminate called", "Traceback", "was sent SIGKILL"):
        assert symptom not in log, log[-3000:]
    assert list(temporary.glob("prometheus-multiproc-*")) == []


def start_gunicorn(repository: Path, **environment: str) -> subprocess.CompletedProcess:
    """gunicorn run to its end: for configurations that must stop it before any worker starts."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"],
        cwd=REPO_ROOT, env=gunicorn_environment(repository, free_port(), **environment),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "variable, value, accepted",
    [  # one of the service's variables, one of gunicorn.conf.py's own (the others: test_runtime_and_config)
        ("WORKERS", "abc", "input should be a valid integer, unable to parse string as an integer"),
        ("WORKER_THREADS", "many", "expected a whole number at least 1"),
    ],
)
def test_a_bad_variable_stops_start_up_with_one_line(variable, value, accepted):
    result = start_gunicorn(COMMITTED_MODELS, **{variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error: invalid configuration: {variable}={value!r}: {accepted}\n"


def test_a_missing_model_repository_stops_start_up(tmp_path):
    result = start_gunicorn(tmp_path / "no-such-folder")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: invalid configuration: MODEL_REPOSITORY='{tmp_path / 'no-such-folder'}' "
                                    "does not exist")


def test_an_empty_model_repository_is_announced_at_start_up(tmp_path):
    empty, metrics_folder, log_path = tmp_path / "empty", tmp_path / "metrics", tmp_path / "gunicorn.log"
    empty.mkdir()
    metrics_folder.mkdir()
    port = free_port()
    environment = gunicorn_environment(empty, port, PROMETHEUS_MULTIPROC_DIR=str(metrics_folder))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "service:create_app()"],
            cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok, process, log_path,
                   "gunicorn did not answer")
    finally:
        stop(process)
    warnings = [line for line in log_path.read_text().splitlines() if "holds no models" in line]
    assert len(warnings) == 1 and '"level": "WARNING"' in warnings[0]  # once, from the master
    assert metrics_folder.is_dir()  # a folder the caller gave is kept
