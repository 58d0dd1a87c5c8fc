"""The service's configuration: one typed object, read from environment variables.

Every setting has a default that is safe in production (upload limits on, admin endpoints off);
``ServiceConfig.from_env()`` reads the variables listed on each field and fails at start-up with
a message naming the variable when a value does not parse.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.repository import model_names


# Environment variable -> field name.  The README lists these; keep the two in step.
ENVIRONMENT_VARIABLES = {
    "MODEL_REPOSITORY": "model_repository",
    "EXECUTION_PROVIDERS": "execution_providers",
    "WORKERS": "workers",
    "INTRA_OP_THREADS": "intra_op_threads",
    "MAX_UPLOAD_BYTES": "max_upload_bytes",
    "MAX_FORM_MEMORY_BYTES": "max_form_memory_bytes",
    "MAX_IMAGES_PER_REQUEST": "max_images_per_request",
    "MAX_BATCH_SIZE": "max_batch_size",
    "MAX_IMAGE_PIXELS": "max_image_pixels",
    "DEFAULT_IMAGE_MODEL": "default_image_model",
    "REFRESH_INTERVAL": "refresh_interval",
    "ADMIN_TOKEN": "admin_token",
}


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

    os.cpu_count() (and onnxruntime's default thread count) see the host's cores, not the
    container's limit, which oversubscribes the CPU and slows every request.
    """
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def cgroup_cpu_quota(cgroup_root: Path) -> float | None:
    """The CPU quota in CPUs (cgroup v2 cpu.max or v1 cfs_quota/cfs_period), None when unlimited."""
    v2 = cgroup_root / "cpu.max"
    v1_quota = cgroup_root / "cpu" / "cpu.cfs_quota_us"
    v1_period = cgroup_root / "cpu" / "cpu.cfs_period_us"
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
        elif v1_quota.is_file() and v1_period.is_file():
            quota, period = v1_quota.read_text().strip(), v1_period.read_text().strip()
        else:
            return None
        if quota == "max" or int(quota) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _lowercase_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def integer_variable(name: str, default: int, minimum: int = 1, maximum: int | None = None,
                     environ: Mapping[str, str] | None = None) -> int:
    """A whole-number environment variable (for gunicorn.conf.py's own settings); ConfigError if not."""
    environ = os.environ if environ is None else environ
    text = environ.get(name, "")
    if text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        accepted = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"invalid configuration: {name}={text!r}: expected a whole number {accepted}")
    return value


def choice_variable(name: str, default: str, choices: list[str], environ: Mapping[str, str] | None = None) -> str:
    """An environment variable that must be one of ``choices`` (case-insensitive); ConfigError if not."""
    environ = os.environ if environ is None else environ
    text = environ.get(name, "")
    if text == "":
        return default
    if text.lower() not in choices:
        raise ConfigError(f"invalid configuration: {name}={text!r}: expected one of {', '.join(choices)}")
    return text.lower()


def check_model_repository(root: Path) -> str | None:
    """ConfigError when MODEL_REPOSITORY is not a folder; a warning when it holds no model.

    A missing folder is a mistake (a typo, the wrong working directory); an empty one may be a
    volume that a training job has yet to fill, so it only gets a warning.
    """
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        relative = "" if root.is_absolute() else f" (relative to {Path.cwd()})"
        raise ConfigError(
            f"invalid configuration: MODEL_REPOSITORY={str(root)!r} {problem}{relative}; "
            "point it at a model repository such as the committed ./models"
        )
    if not model_names(root):
        return (
            f"the model repository {root.resolve()} holds no models (no <name>/<version>/ folders): "
            "every request for a model answers 404 and /readyz 503 until one appears"
        )
    return None


class ServiceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Root of the model repository: <root>/<name>/<version>/{model.onnx,manifest.json}.
    model_repository: Path = Path("./models")
    # auto: CUDA when onnxruntime offers it, else CPU.  cuda: ask for CUDA (falls back to CPU, loudly).
    execution_providers: Literal["auto", "cpu", "cuda"] = "auto"
    # gunicorn worker processes; the CPUs are shared among them (see intra_op_threads).
    workers: int = Field(default_factory=available_cpus, ge=1)
    # onnxruntime threads per session; 0 means CPUs available // workers (at least 1).
    intra_op_threads: int = Field(default=0, ge=0)
    # Largest request body (Flask MAX_CONTENT_LENGTH); larger ones get 413 before being read.
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    # Largest non-file field of a multipart form (Flask MAX_FORM_MEMORY_SIZE).  Werkzeug also
    # bounds its parse buffer with it and reads in 64 KiB chunks, so keep it well above that.
    max_form_memory_bytes: int = Field(default=500_000, ge=1)
    max_images_per_request: int = Field(default=64, ge=1)
    # Largest number of rows accepted by /models/<name>/predict in one request.
    max_batch_size: int = Field(default=1024, ge=1)
    # Images with more pixels are refused before decoding (Pillow's MAX_IMAGE_PIXELS).
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    default_image_model: str = "mnist_mlp"
    # Seconds between two scans of the repository for new versions; 0 turns polling off.
    refresh_interval: float = Field(default=2.0, ge=0)
    # Bearer token for the state-changing /admin endpoints; None disables them.
    admin_token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        environ = os.environ if environ is None else environ
        values = {
            field: environ[variable]
            for variable, field in ENVIRONMENT_VARIABLES.items()
            if environ.get(variable, "") != ""
        }
        try:
            return cls(**values)
        except ValidationError as exc:
            field_to_variable = {field: variable for variable, field in ENVIRONMENT_VARIABLES.items()}
            problems = []
            for error in exc.errors():
                variable = field_to_variable.get(str(error["loc"][0]), str(error["loc"][0]))
                problems.append(f"{variable}={environ.get(variable, '')!r}: {_lowercase_first(error['msg'])}")
            raise ConfigError(f"invalid configuration: {'; '.join(problems)}") from exc

    @property
    def session_threads(self) -> int:
        """intra_op_num_threads for every session, so that workers x threads <= CPUs available."""
        if self.intra_op_threads:
            return self.intra_op_threads
        return max(1, available_cpus() // self.workers)
