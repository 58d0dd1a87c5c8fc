"""Writing versions into the model repository so that a reader never sees half of one.

A version is staged in a temporary folder inside the model's folder (``.tmp-*``, which the service
ignores), every file is fsync'd, and the folder is renamed to the next free version number: a
rename within one file system is atomic.  If another writer took that number first, the next one is
taken.  Whatever goes wrong before the rename, the staging folder is removed and nothing changes.

Pruning is opt-in (``--keep N``) and never deletes a version that git tracks: the committed
versions belong to the checkout, not to the training runs, and deleting them would leave it dirty.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.manifest import MANIFEST_FILENAME, Manifest
from service.repository import version_numbers

STAGING_PREFIX = ".tmp-"


def next_version(model_dir: Path) -> int:
    versions = version_numbers(model_dir)
    return versions[-1] + 1 if versions else 1


@contextmanager
def staging_folder(model_dir: Path) -> Iterator[Path]:
    """A fresh temporary folder inside ``model_dir`` to write a version into; removed unless committed."""
    model_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    try:
        folder.chmod(0o755)  # mkdtemp makes it private (0700); the version must be readable by the service
        yield folder
    finally:
        # After a successful commit the folder has been renamed away; otherwise drop the partial files.
        shutil.rmtree(folder, ignore_errors=True)


def commit(folder: Path, model_dir: Path, manifest: Manifest) -> int:
    """Write the manifest into the staged ``folder`` and rename it into place; returns the version taken.

    The version number in ``manifest`` is a proposal: if that version exists by now, the manifest
    is rewritten with the next free number and the rename is tried again.
    """
    version = max(manifest.version, next_version(model_dir))
    while True:
        manifest = manifest.model_copy(update={"version": version})
        (folder / MANIFEST_FILENAME).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(folder)
        try:
            # rename(2) fails on an existing non-empty folder instead of replacing it.
            os.rename(folder, model_dir / str(version))
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            version = max(version + 1, next_version(model_dir))
            continue
        _fsync(model_dir)
        return version


def writable_problem(model_dir: Path) -> str | None:
    """Why a version could not be written into ``model_dir`` (created if need be); None if it could.

    Probed by creating and removing a staging folder in the nearest folder that exists, so nothing
    is left behind (an empty model folder would show up in the service as a model without versions).
    """
    existing = Path(model_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot write the model repository: {existing} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}preflight-", dir=existing))
    except OSError as error:
        return f"cannot write the model repository: {existing}: {error.strerror or error}"
    return None


def prune(model_dir: Path, keep: int, protect: int) -> list[int]:
    """Delete all but the newest ``keep`` versions, never ``protect`` nor a version git tracks;
    returns the versions deleted.

    Each old version is first renamed to a staging name, so a reader sees it either whole or gone.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    versions = version_numbers(model_dir)
    tracked = git_tracked_versions(model_dir)
    doomed = [version for version in versions[:-keep] if version != protect and version not in tracked]
    for version in doomed:
        hidden = model_dir / f"{STAGING_PREFIX}pruned-{version}-{os.getpid()}"
        os.rename(model_dir / str(version), hidden)
        shutil.rmtree(hidden)
    return doomed


def git_tracked_versions(model_dir: Path) -> set[int]:
    """Versions with files in git's index: none outside a git work tree (or without git), every
    version when git is there but cannot answer (e.g. a repository owned by another user)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(model_dir), "ls-files", "-z", "--", "."],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if listed.returncode != 0:
        return set() if b"not a git repository" in listed.stderr else set(version_numbers(model_dir))
    top_folders = {path.split("/", 1)[0] for path in listed.stdout.decode(errors="replace").split("\0") if path}
    return {int(name) for name in top_folders if name.isdigit()}


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
