"""The manifest: the contract between training (which writes it) and the service (which reads it).

Each version of a model lives in ``<repository>/<name>/<version>/`` and holds ``model.onnx`` and
``manifest.json``.  The service learns everything it needs about a model from this file and the
graph: which inputs it takes, what the outputs mean, whether it accepts images and how to prepare
them.  There is one schema, defined here, and both halves use it, so a field cannot drift.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
MODEL_FILENAME = "model.onnx"
MANIFEST_FILENAME = "manifest.json"
# Model names become URL paths (/models/<name>/predict), so keep them to a safe alphabet.
MODEL_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Strict):
    """How to turn an uploaded picture into this input tensor.

    ``preprocessing`` names a recipe implemented in ``service.imaging``; "mnist" is the recipe
    MNIST itself was made with (grayscale, light ink on dark, ink fitted in 20x20, centred by
    centre of mass in 28x28, values in [0, 1]).
    """

    preprocessing: Literal["mnist"]
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: int = Field(gt=0)
    # The pixel values the graph takes, [low, high]: ink 0..255 is mapped onto it, and numbers
    # outside it are refused.  Manifests written before this field existed mean [0, 1].
    value_range: tuple[float, float] = (0.0, 1.0)

    @field_validator("value_range")
    @classmethod
    def _low_below_high(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError(f"value_range must be [low, high] with low < high, got {list(value)}")
        return value


class TensorSpec(_Strict):
    name: str
    dtype: Literal["float32"]
    # -1 marks a dynamic axis; the first axis is always the batch axis.
    shape: list[int]
    description: str
    # For a classifier output: the meaning of each position along the last axis.
    labels: list[str] | None = None
    # Only on an input that accepts images.
    image: ImageSpec | None = None


class Bar(_Strict):
    """What "trained" must mean for this model: metric ``op`` threshold."""

    metric: str
    op: Literal["<", "<=", ">", ">="]
    threshold: float

    def met_by(self, metrics: dict[str, float]) -> bool:
        value = metrics[self.metric]
        return {
            "<": value < self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            ">=": value >= self.threshold,
        }[self.op]


class Verdict(_Strict):
    """How ``/predict`` judges each picture from the best label's probability (service/verdict.py).

    The probabilities the graph returns are calibrated: ``temperature`` was fitted on held-out
    data and is already folded into the graph (recorded here for provenance).  A best probability
    of at least ``digit_at_least`` is a confident answer ("digit"); below ``not_a_digit_below``
    no label fits ("not_a_digit"); in between the picture holds a label the model cannot pin
    down ("uncertain").  ``chosen_on`` says which data the temperature and thresholds were
    chosen on.  A model without this section gets no verdict.
    """

    method: Literal["max_probability"]
    digit_at_least: float = Field(gt=0, le=1)
    not_a_digit_below: float = Field(ge=0, le=1)
    temperature: float = Field(gt=0)
    chosen_on: str

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> Verdict:
        if self.not_a_digit_below > self.digit_at_least:
            raise ValueError(
                f"not_a_digit_below ({self.not_a_digit_below}) must not exceed digit_at_least ({self.digit_at_least})"
            )
        return self


class Training(_Strict):
    seed: int
    epochs: int
    device: str
    seconds: float
    data: str
    hyperparameters: dict[str, float | int | str | bool]


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1)
    seed_notebook: str
    description: str
    # Where and why this model departs from its seed notebook (its bugs are not kept).
    departures: list[str] = []
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    metrics: dict[str, float]
    bar: Bar
    training: Training
    libraries: dict[str, str]
    created: str  # ISO 8601, UTC
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    plots: list[str] = []
    verdict: Verdict | None = None

    @property
    def image_input(self) -> TensorSpec | None:
        """The input that accepts images, if this model has exactly one input and it does."""
        if len(self.inputs) == 1 and self.inputs[0].image is not None:
            return self.inputs[0]
        return None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def read_manifest(path: Path) -> Manifest:
    """Parse and validate a manifest.json; raises pydantic.ValidationError or OSError."""
    return Manifest.model_validate_json(Path(path).read_bytes())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
