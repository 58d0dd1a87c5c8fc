"""Providers, threads and configuration: what the service asks of onnxruntime and the machine."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from service_fixtures import IMAGE_MODEL, registry_of

from service.config import (
    ConfigError,
    ServiceConfig,
    available_cpus,
    cgroup_cpu_quota,
    check_model_repository,
    choice_variable,
    integer_variable,
)
from service.runtime import CPU, CUDA, choose_providers

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "requested, available, expected",
    [
        ("auto", [CUDA, CPU], [CUDA, CPU]),
        ("auto", ["AzureExecutionProvider", CPU], [CPU]),
        ("cpu", [CUDA, CPU], [CPU]),
        ("cuda", [CUDA, CPU], [CUDA, CPU]),
        # Asked for explicitly, CUDA is tried even when not listed, so the fallback is visible.
        ("cuda", [CPU], [CUDA, CPU]),
    ],
)
def test_choose_providers(requested, available, expected):
    assert choose_providers(requested, available) == expected


@pytest.mark.filterwarnings("ignore:Specified provider .CUDAExecutionProvider.")
def test_cuda_requested_on_a_cpu_machine_falls_back_loudly(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        client = make_app(execution_providers="cuda").test_client()
    model = client.get(f"/models/{IMAGE_MODEL}").get_json()
    assert model["requested_providers"] == [CUDA, CPU]
    assert model["provider"] == CPU and model["provider_fallback"] is True
    assert any("CUDA did not load" in record.getMessage() for record in caplog.records)


def test_sessions_are_configured_for_shared_cpus(make_app):
    app = make_app(workers=1, intra_op_threads=3)
    options = registry_of(app).get(IMAGE_MODEL).session.get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_threads_per_worker_split_the_available_cpus():
    cpus = available_cpus()
    assert ServiceConfig(workers=1).session_threads == cpus
    assert ServiceConfig(workers=cpus).session_threads == 1
    assert ServiceConfig(workers=cpus * 4).session_threads == 1
    assert ServiceConfig(workers=cpus, intra_op_threads=2).session_threads == 2


def test_cgroup_quota_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path / "v1") == 0.5
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(tmp_path / "v1") is None
    assert cgroup_cpu_quota(tmp_path / "nothing") is None


def test_available_cpus_is_capped_by_the_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cpus(tmp_path) == 1


def test_configuration_from_the_environment():
    config = ServiceConfig.from_env(
        {
            "MODEL_REPOSITORY": "/srv/models",
            "EXECUTION_PROVIDERS": "cpu",
            "WORKERS": "3",
            "INTRA_OP_THREADS": "2",
            "MAX_UPLOAD_BYTES": "1000",
            "MAX_FORM_MEMORY_BYTES": "100",
            "MAX_IMAGES_PER_REQUEST": "5",
            "MAX_BATCH_SIZE": "7",
            "MAX_IMAGE_PIXELS": "1000000",
            "DEFAULT_IMAGE_MODEL": "other",
            "REFRESH_INTERVAL": "0.5",
            "ADMIN_TOKEN": "s3cret",
        }
    )
    assert config == ServiceConfig(
        model_repository=Path("/srv/models"), execution_providers="cpu", workers=3, intra_op_threads=2,
        max_upload_bytes=1000, max_form_memory_bytes=100, max_images_per_request=5, max_batch_size=7,
        max_image_pixels=1_000_000, default_image_model="other", refresh_interval=0.5, admin_token="s3cret",
    )


def test_defaults_are_safe():
    config = ServiceConfig.from_env({})
    assert config.model_repository == Path("models")
    assert config.admin_token is None
    assert config.max_upload_bytes == 20 * 1024 * 1024
    assert config.refresh_interval == 2.0 and config.default_image_model == "mnist_mlp"


@pytest.mark.parametrize(
    "variable, value, accepted",
    [
        ("WORKERS", "zero", "input should be a valid integer, unable to parse string as an integer"),
        ("MAX_BATCH_SIZE", "0", "input should be greater than or equal to 1"),
        ("EXECUTION_PROVIDERS", "tpu", "input should be 'auto', 'cpu' or 'cuda'"),
        ("REFRESH_INTERVAL", "-1", "input should be greater than or equal to 0"),
    ],
)
def test_a_bad_variable_is_named_with_what_it_accepts(variable, value, accepted):
    with pytest.raises(ConfigError) as raised:
        ServiceConfig.from_env({variable: value})
    assert str(raised.value) == f"invalid configuration: {variable}={value!r}: {accepted}"


@pytest.mark.parametrize(
    "variable, value, accepted",
    [
        ("PORT", "70000", "expected a whole number from 1 to 65535"),
        ("PORT", "eighty", "expected a whole number from 1 to 65535"),
        ("LOG_LEVEL", "loud", "expected one of debug, info, warning"),
    ],
)
def test_gunicorn_variables_are_named_with_what_they_accept(variable, value, accepted):
    def read(environ):
        if variable == "PORT":
            return integer_variable("PORT", 8000, maximum=65535, environ=environ)
        return choice_variable("LOG_LEVEL", "info", ["debug", "info", "warning"], environ=environ)

    with pytest.raises(ConfigError) as raised:
        read({variable: value})
    assert str(raised.value) == f"invalid configuration: {variable}={value!r}: {accepted}"
    assert read({}) in (8000, "info")  # unset: the default


def test_the_model_repository_must_exist_and_an_empty_one_is_announced(tmp_path):
    with pytest.raises(ConfigError, match="MODEL_REPOSITORY='.*nowhere' does not exist"):
        check_model_repository(tmp_path / "nowhere")
    assert "holds no models" in check_model_repository(tmp_path)
    assert check_model_repository(REPO_ROOT / "models") is None


def test_the_service_never_imports_torch_or_onnx():
    """onnx is a dev dependency and torch a training one: neither is installed in production."""
    code = (
        "import sys; from service import create_app; from service.config import ServiceConfig; "
        "app = create_app(ServiceConfig(refresh_interval=0)); "
        "app.test_client().get('/models'); "
        "print(sorted(m for m in ('torch', 'onnx', 'torchvision') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_gunicorn_config_does_not_import_onnxruntime_in_the_master(tmp_path):
    """onnxruntime imported before the fork makes workers hang or abort when they exit."""
    code = (
        "import runpy, sys; runpy.run_path('gunicorn.conf.py'); "
        "print('onnxruntime' in sys.modules, 'flask' in sys.modules)"
    )
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False False"
