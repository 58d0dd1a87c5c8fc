"""The model repository on disk: ``<root>/<name>/<version>/{model.onnx,manifest.json,*.png}``.

Versions are positive integers; the newest valid one is served.  Anything else in a model's
folder (for example the temporary folder a training run writes into before renaming it into
place) is not a version and is ignored.
"""

from __future__ import annotations

from pathlib import Path


def version_numbers(model_dir: Path) -> list[int]:
    """The versions present in a model's folder, oldest first."""
    if not Path(model_dir).is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in Path(model_dir).iterdir()
        if entry.is_dir() and entry.name.isdigit() and not entry.name.startswith("0")
    )
