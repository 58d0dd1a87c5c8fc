"""README.md's table of models states what the committed artefacts say: each figure in its last
column is read from the newest committed version's manifest, so the two cannot part ways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.manifest import MANIFEST_FILENAME, Manifest, read_manifest
from service.repository import version_numbers

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
MODELS = REPO_ROOT / "models"
LAST_COLUMN = "newest committed version"


def committed_figures(manifest: Manifest) -> str:
    """What the last column says about one model: its version, bar metric, epochs and training time."""
    value = manifest.metrics[manifest.bar.metric]
    shown = f"{value:.2%}" if manifest.bar.metric.endswith("accuracy") else f"{value:.2g}"
    return (
        f"v{manifest.version}: {manifest.bar.metric} {shown}, {manifest.training.epochs} epochs, "
        f"{manifest.training.seconds:.3g} s"
    )


def readme_table() -> dict[str, str]:
    """Model name -> the last cell of its row in the README's table of models."""
    rows, in_table = {}, False
    for line in README.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| model |") and cells[-1] == LAST_COLUMN:
            in_table = True
        elif in_table and line.startswith("|"):
            name = re.fullmatch(r"`(\w+)`", cells[0])
            if name:
                rows[name.group(1)] = cells[-1]
        elif in_table:
            break
    return rows


def newest_manifest(name: str) -> Manifest:
    versions = version_numbers(MODELS / name)
    assert versions, f"no committed version of {name}"
    return read_manifest(MODELS / name / str(versions[-1]) / MANIFEST_FILENAME)


MODEL_NAMES = sorted(path.name for path in MODELS.iterdir() if version_numbers(path))


def test_the_table_lists_every_committed_model():
    assert sorted(readme_table()) == MODEL_NAMES


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_figures_are_the_manifests(name):
    expected = committed_figures(newest_manifest(name))
    assert readme_table().get(name) == expected, f"README.md's row for {name} should end with: | {expected} |"
