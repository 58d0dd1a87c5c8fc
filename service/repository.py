"""The model repository on disk: ``<root>/<name>/<version>/{model.onnx,manifest.json,*.png}``.

Versions are positive integers; the newest valid one is served.  Anything else in a model's
folder (for example the temporary folder a training run writes into before renaming it into
place) is not a version and is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from service.manifest import (
    MANIFEST_FILENAME,
    MODEL_FILENAME,
    MODEL_NAME_PATTERN,
    Manifest,
    read_manifest,
    sha256_of,
)


def version_numbers(model_dir: Path) -> list[int]:
    """The versions present in a model's folder, oldest first."""
    if not Path(model_dir).is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in Path(model_dir).iterdir()
        if entry.is_dir() and entry.name.isdigit() and not entry.name.startswith("0")
    )


# --- Reading versions for the service (no onnxruntime here: this module only knows files) ---

# (size, mtime_ns) of manifest.json and model.onnx: changes whenever either file is replaced.
Fingerprint = tuple[tuple[int, int] | None, tuple[int, int] | None]


class InvalidVersion(Exception):
    """A version folder that must not be served; the message says why."""


@dataclass(frozen=True)
class ModelVersion:
    """A version folder whose manifest is valid and whose model.onnx matches its checksum."""

    name: str
    version: int
    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILENAME


def model_names(root: Path) -> list[str]:
    """The models in a repository: sub-folders whose names are valid model names."""
    if not Path(root).is_dir():
        return []
    return sorted(
        entry.name
        for entry in Path(root).iterdir()
        if entry.is_dir() and re.fullmatch(MODEL_NAME_PATTERN, entry.name)
    )


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def fingerprint(version_dir: Path) -> Fingerprint:
    """A cheap identity of a version's files (two stat calls), used to notice replacements."""
    return _stat(version_dir / MANIFEST_FILENAME), _stat(version_dir / MODEL_FILENAME)


def read_version(model_dir: Path, version: int) -> ModelVersion:
    """Validate one version folder: manifest schema, name and version, model checksum.

    Raises InvalidVersion with a message fit for a log line and for /models.
    """
    model_dir = Path(model_dir)
    path = model_dir / str(version)
    try:
        manifest = read_manifest(path / MANIFEST_FILENAME)
    except FileNotFoundError:
        raise InvalidVersion(f"{MANIFEST_FILENAME} is missing") from None
    except ValidationError as exc:
        raise InvalidVersion(f"{MANIFEST_FILENAME} is invalid: {_summarise(exc)}") from None
    except (OSError, ValueError) as exc:
        raise InvalidVersion(f"{MANIFEST_FILENAME} cannot be read: {exc}") from None
    if manifest.name != model_dir.name:
        raise InvalidVersion(f"manifest names model {manifest.name!r}, folder is {model_dir.name!r}")
    if manifest.version != version:
        raise InvalidVersion(f"manifest says version {manifest.version}, folder is {version}")
    try:
        actual = sha256_of(path / MODEL_FILENAME)
    except FileNotFoundError:
        raise InvalidVersion(f"{MODEL_FILENAME} is missing") from None
    except OSError as exc:
        raise InvalidVersion(f"{MODEL_FILENAME} cannot be read: {exc}") from None
    if actual != manifest.sha256:
        raise InvalidVersion(
            f"{MODEL_FILENAME} sha256 {actual[:12]}... does not match the manifest's "
            f"{manifest.sha256[:12]}..."
        )
    return ModelVersion(name=manifest.name, version=version, path=path, manifest=manifest)


def _summarise(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '<root>'}: {item['msg']}"
        for item in error.errors()[:5]
    )
