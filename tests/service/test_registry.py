"""Loading from the repository: broken versions are refused and reported, older ones serve,
new versions are swapped in without a failed request, and broken new versions change nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time

import numpy as np
import pytest
from service_fixtures import (
    IMAGE_MODEL,
    TABULAR_MODEL,
    digit_classifier,
    draw_digit,
    encode,
    linear_model,
    registry_of,
    write_version,
)

from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME
from service.metrics import MODEL_LOAD_FAILURES

PNG = encode(draw_digit("7"))


def failures_counted(model: str) -> float:
    return sum(
        MODEL_LOAD_FAILURES.labels(model=model, phase=phase)._value.get() for phase in ("startup", "refresh")
    )


def corrupt_model(version_dir) -> None:
    """Garbage bytes in model.onnx, with a manifest checksum that matches them."""
    (version_dir / MODEL_FILENAME).write_bytes(b"this is not an onnx graph")
    manifest = json.loads((version_dir / MANIFEST_FILENAME).read_text())
    manifest["sha256"] = hashlib.sha256(b"this is not an onnx graph").hexdigest()
    (version_dir / MANIFEST_FILENAME).write_text(json.dumps(manifest))


def break_checksum(version_dir) -> None:
    (version_dir / MODEL_FILENAME).write_bytes(linear_model(bias=np.zeros(2, np.float32)).SerializeToString())


def break_manifest(version_dir) -> None:
    (version_dir / MANIFEST_FILENAME).write_text('{"name": "tiny_linear", "version": ')


def rename_graph_input(version_dir) -> None:
    manifest = json.loads((version_dir / MANIFEST_FILENAME).read_text())
    manifest["inputs"][0]["name"] = "features"
    (version_dir / MANIFEST_FILENAME).write_text(json.dumps(manifest))


BREAKAGES = {
    "not an onnx graph": (corrupt_model, "onnxruntime cannot load"),
    "checksum mismatch": (break_checksum, "sha256"),
    "invalid manifest": (break_manifest, "manifest.json is invalid"),
    "graph inputs differ from manifest": (rename_graph_input, "graph inputs ['x']"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_a_broken_newest_version_is_reported_and_the_older_one_serves(make_app, repository, breakage):
    damage, words = BREAKAGES[breakage]
    damage(write_version(repository, TABULAR_MODEL, 2, linear_model(bias=np.ones(2, np.float32))))
    before = failures_counted(TABULAR_MODEL)
    client = make_app().test_client()

    listed = client.get(f"/models/{TABULAR_MODEL}").get_json()
    assert listed["served_version"] == 1 and listed["versions_on_disk"] == [1, 2]
    assert [error["version"] for error in listed["load_errors"]] == [2]
    assert words in listed["load_errors"][0]["error"]
    assert failures_counted(TABULAR_MODEL) == before + 1

    assert client.get("/readyz").status_code == 200
    assert client.post(f"/models/{TABULAR_MODEL}/predict", json={"inputs": [[0, 0, 0]]}).get_json()["version"] == 1


def test_a_model_with_no_valid_version_is_not_ready_and_the_others_serve(make_app, repository):
    corrupt_model(write_version(repository, "broken_only", 1, linear_model()))
    client = make_app().test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert list(ready.get_json()["not_ready"]) == ["broken_only"]
    assert "onnxruntime cannot load" in ready.get_json()["not_ready"]["broken_only"]
    unavailable = client.post("/models/broken_only/predict", json={"inputs": [[1, 2, 3]]})
    assert unavailable.status_code == 503 and unavailable.get_json()["error"]["code"] == "model_unavailable"
    assert client.post("/predict", data=PNG, content_type="image/png").status_code == 200


def test_folders_that_are_not_versions_are_ignored(make_app, repository):
    (repository / TABULAR_MODEL / ".tmp-3-1234").mkdir()
    (repository / TABULAR_MODEL / "notes").mkdir()
    (repository / "README.md").write_text("not a model")
    body = make_app().test_client().get(f"/models/{TABULAR_MODEL}").get_json()
    assert body["versions_on_disk"] == [1] and body["load_errors"] == []


def test_a_vanished_repository_keeps_the_loaded_models(make_app, repository, tmp_path):
    app = make_app()
    repository.rename(tmp_path / "elsewhere")
    registry_of(app).refresh()
    assert registry_of(app).get(TABULAR_MODEL).number == 1
    assert app.test_client().get("/readyz").status_code == 200


def test_an_empty_repository_is_not_ready(make_app, tmp_path):
    response = make_app(model_repository=tmp_path / "empty").test_client().get("/readyz")
    assert response.status_code == 503


def poll_until(condition, seconds: float = 60.0) -> bool:
    # Generous: it returns as soon as the condition holds, and a loaded machine is slow.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_new_versions_swap_in_without_a_failed_request(make_app, repository):
    app = make_app(refresh_interval=0.2)
    versions_seen, failures = [], []
    stop = threading.Event()

    def keep_asking():
        client = app.test_client()
        while not stop.is_set():
            response = client.post("/predict", data=PNG, content_type="image/png")
            if response.status_code != 200:
                failures.append(response.get_data(as_text=True))
            else:
                versions_seen.append(response.get_json()["version"])

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        assert poll_until(lambda: len(versions_seen) > 20)
        write_version(repository, IMAGE_MODEL, 2, digit_classifier(seed=2))  # temp folder + rename
        assert poll_until(lambda: versions_seen[-1] == 2), "version 2 was not served within 60 s"
        count_at_v2 = len(versions_seen)
        assert poll_until(lambda: len(versions_seen) > count_at_v2 + 20)

        # A broken version 3 changes nothing, and is not retried on every poll.
        before = failures_counted(IMAGE_MODEL)
        corrupt_model(write_version(repository, IMAGE_MODEL, 3, digit_classifier(seed=3)))
        assert poll_until(lambda: failures_counted(IMAGE_MODEL) == before + 1)
        time.sleep(1.0)  # five more polls
        assert failures_counted(IMAGE_MODEL) == before + 1
        seen_after_v3 = len(versions_seen)
        assert poll_until(lambda: len(versions_seen) > seen_after_v3 + 20)
    finally:
        stop.set()
        asker.join()

    assert failures == []
    assert set(versions_seen[seen_after_v3:]) == {2}
    # Versions only move forward: never back to 1 once 2 answered.
    assert versions_seen == sorted(versions_seen)
    errors = app.test_client().get(f"/models/{IMAGE_MODEL}").get_json()["load_errors"]
    assert [error["version"] for error in errors] == [3]


def test_a_repaired_version_is_tried_again(make_app, repository):
    broken = write_version(repository, TABULAR_MODEL, 2, linear_model(bias=np.ones(2, np.float32)))
    original = (broken / MODEL_FILENAME).read_bytes()
    break_checksum(broken)
    app = make_app()
    assert registry_of(app).get(TABULAR_MODEL).number == 1
    (broken / MODEL_FILENAME).write_bytes(original)
    registry_of(app).refresh()
    assert registry_of(app).get(TABULAR_MODEL).number == 2


def test_a_signature_change_is_refused_while_running(make_app, repository):
    app = make_app()
    wider = linear_model(weight=np.ones((4, 2), np.float32))
    write_version(
        repository, TABULAR_MODEL, 2, wider,
        inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 4], "description": "four features"}],
    )
    registry_of(app).refresh()
    state = registry_of(app).state(TABULAR_MODEL)
    assert state.served.number == 1
    assert "differ from the served" in state.failures[2].reason


def test_deleting_the_served_version_rolls_back_to_the_previous_one(make_app, repository):
    newest = write_version(repository, TABULAR_MODEL, 2, linear_model(bias=np.ones(2, np.float32)))
    app = make_app()
    assert registry_of(app).get(TABULAR_MODEL).number == 2
    shutil.rmtree(newest)
    registry_of(app).refresh()
    assert registry_of(app).get(TABULAR_MODEL).number == 1


def test_in_flight_references_survive_a_swap(make_app, repository):
    app = make_app()
    old = registry_of(app).get(TABULAR_MODEL)
    write_version(repository, TABULAR_MODEL, 2, linear_model(bias=np.ones(2, np.float32)))
    registry_of(app).refresh()
    assert registry_of(app).get(TABULAR_MODEL).number == 2
    outputs, _ = old.run({"x": np.zeros((1, 3), np.float32)})  # the old session still works
    assert np.allclose(outputs["y"], [[0.5, -1.0]])


def test_sessions_refuse_to_be_used_in_another_process(app, monkeypatch):
    registry = registry_of(app)
    monkeypatch.setattr(registry, "_pid", registry._pid + 1)  # as if we were a forked child
    with pytest.raises(RuntimeError, match="after the fork"):
        registry.get(TABULAR_MODEL)
