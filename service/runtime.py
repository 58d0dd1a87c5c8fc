"""onnxruntime sessions: which providers, how many threads, and running a batch.

``LoadedModel`` is one validated model version in one InferenceSession.  It knows nothing of
HTTP: it takes named float32 arrays and returns named float32 arrays, refusing non-finite
results.  Sessions are created in the process that uses them (each gunicorn worker, after the
fork); an inherited session can crash when it is destroyed, so none may cross a fork.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnxruntime as ort

from service.errors import NonFiniteOutput
from service.manifest import TensorSpec
from service.repository import InvalidVersion, ModelVersion

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

ProviderRequest = Literal["auto", "cpu", "cuda"]


def choose_providers(requested: ProviderRequest, available: list[str]) -> list[str]:
    """The provider list to hand onnxruntime, best first; CPU always ends it as the fallback.

    "cuda" asks for CUDA even when onnxruntime does not list it, so that the fallback happens
    (and is reported) rather than being hidden; "auto" asks for CUDA only when it is listed.
    """
    if requested == "cpu":
        return [CPU]
    if requested == "cuda" or CUDA in available:
        return [CUDA, CPU]
    return [CPU]


@dataclass(frozen=True)
class RuntimeSettings:
    providers: ProviderRequest
    intra_op_threads: int


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle spinning threads burn CPU that the other workers need; no measurable cost here.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The arena keeps a high-water mark per batch shape and never shrinks; these models are
    # small, so plain allocation costs little and keeps RSS flat across batch sizes.
    options.enable_cpu_mem_arena = False
    return options


def _check_signature(specs: list[TensorSpec], args: list[ort.NodeArg], kind: str) -> None:
    """Refuse a graph whose inputs/outputs do not match what the manifest promises."""
    if [spec.name for spec in specs] != [arg.name for arg in args]:
        raise InvalidVersion(
            f"graph {kind} {[arg.name for arg in args]} do not match the manifest's "
            f"{[spec.name for spec in specs]}"
        )
    for spec, arg in zip(specs, args):
        if arg.type != "tensor(float)":
            raise InvalidVersion(f"graph {kind[:-1]} {arg.name!r} is {arg.type}, manifest says float32")
        if len(arg.shape) != len(spec.shape):
            raise InvalidVersion(
                f"graph {kind[:-1]} {arg.name!r} has shape {arg.shape}, manifest says {spec.shape}"
            )
        for graph_dim, manifest_dim in zip(arg.shape, spec.shape):
            # A static graph axis must be static and equal in the manifest; a dynamic one may
            # be fixed by the manifest (then the service enforces it before running).
            if isinstance(graph_dim, int) and graph_dim != manifest_dim:
                raise InvalidVersion(
                    f"graph {kind[:-1]} {arg.name!r} has shape {arg.shape}, manifest says {spec.shape}"
                )


def _check_image_input(spec: TensorSpec | None) -> None:
    """An image input must hold exactly one prepared grayscale picture per sample."""
    if spec is None or spec.image is None:
        return
    image = spec.image
    if image.channels != 1 or math.prod(spec.shape[1:]) != image.height * image.width:
        raise InvalidVersion(
            f"image input {spec.name!r} has shape {spec.shape}, which does not hold one "
            f"{image.height}x{image.width} grayscale picture per sample (the {image.preprocessing} recipe)"
        )


class LoadedModel:
    """One model version in one onnxruntime session, checked against its manifest."""

    def __init__(self, version: ModelVersion, settings: RuntimeSettings):
        self.version = version
        self.manifest = version.manifest
        self.requested_providers = choose_providers(settings.providers, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(
                str(version.model_path),
                session_options(settings.intra_op_threads),
                providers=self.requested_providers,
            )
        except Exception as exc:  # onnxruntime raises its own types (Fail, InvalidGraph, ...)
            raise InvalidVersion(f"onnxruntime cannot load {version.model_path.name}: {exc}") from None
        _check_signature(self.manifest.inputs, self.session.get_inputs(), "inputs")
        _check_signature(self.manifest.outputs, self.session.get_outputs(), "outputs")
        _check_image_input(self.manifest.image_input)
        self.providers = self.session.get_providers()
        # The CUDA provider falls back to CPU with no exception: compare what we got.
        self.provider_fallback = self.requested_providers[0] != self.providers[0]
        if self.provider_fallback:
            log.warning(
                "%s asked for %s but onnxruntime runs it on %s: CUDA did not load",
                self.describe(), self.requested_providers[0], self.providers[0],
                extra={"model": self.manifest.name, "version": version.version,
                       "provider": self.providers[0], "provider_fallback": True},
            )

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def number(self) -> int:
        return self.version.version

    def describe(self) -> str:
        return f"{self.name} v{self.number}"

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """Run one batch; returns the outputs by name and the seconds spent in onnxruntime."""
        started = time.perf_counter()
        values = self.session.run(None, feeds)
        elapsed = time.perf_counter() - started
        outputs = {spec.name: np.asarray(value) for spec, value in zip(self.manifest.outputs, values)}
        for name, value in outputs.items():
            if not np.all(np.isfinite(value)):
                raise NonFiniteOutput(
                    f"{self.describe()} produced NaN or infinity in output {name!r}; "
                    "the input is probably far outside the range the model was trained on"
                )
        return outputs, elapsed
