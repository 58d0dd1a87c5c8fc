"""The registry: which version of each model is served, and swapping in new ones safely.

At start-up ``refresh()`` loads the newest valid version of every model in the repository;
afterwards a background thread calls it every ``refresh_interval`` seconds.  A refresh first
compares a cheap listing (version folders and the size/mtime of their two files) with the last
one and does nothing when it is unchanged.  When a newer version appears it is validated and
loaded into a new session off the request path, then the registry's dict is replaced in one
assignment: requests already running keep their reference to the old session and finish on it.

A version that fails (bad manifest, checksum mismatch, unloadable graph, signature different
from the served version) is refused, logged, counted, and remembered by its fingerprint so it
is not retried on every poll; the previous version keeps serving.  Nothing here knows HTTP.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from service import lifecycle, metrics
from service.errors import ModelNotFound, ModelUnavailable
from service.manifest import Manifest, TensorSpec
from service.repository import (
    Fingerprint,
    InvalidVersion,
    fingerprint,
    model_names,
    read_version,
    version_numbers,
)
from service.runtime import LoadedModel, RuntimeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadFailure:
    version: int
    reason: str
    fingerprint: Fingerprint


@dataclass(frozen=True)
class ModelState:
    """What the registry knows about one model folder; replaced, never mutated."""

    name: str
    served: LoadedModel | None
    served_fingerprint: Fingerprint | None
    # (version, fingerprint) of every version folder, as of the last scan.
    listing: tuple[tuple[int, Fingerprint], ...]
    failures: dict[int, LoadFailure]

    @property
    def versions_on_disk(self) -> list[int]:
        return [version for version, _ in self.listing]


def signature(manifest: Manifest) -> tuple:
    """What clients depend on: input and output names, types, shapes, image specs and labels."""

    def of(specs: list[TensorSpec]) -> tuple:
        return tuple((s.name, s.dtype, tuple(s.shape), s.image, tuple(s.labels or ())) for s in specs)

    return of(manifest.inputs), of(manifest.outputs)


class ModelRegistry:
    def __init__(self, root: Path, settings: RuntimeSettings):
        self.root = Path(root)
        self.settings = settings
        self._models: dict[str, ModelState] = {}
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._scans = 0
        # Sessions belong to the process that made them (see service.runtime).
        self._pid = lifecycle.process_id()

    # --- reading (request path) ---

    def states(self) -> dict[str, ModelState]:
        self._check_process()
        return self._models

    def state(self, name: str) -> ModelState:
        state = self.states().get(name)
        if state is None:
            raise ModelNotFound(f"no model named {name!r}; GET /models lists them")
        return state

    def get(self, name: str) -> LoadedModel:
        """The served version of a model (a stable reference: later swaps do not change it)."""
        state = self.state(name)
        if state.served is None:
            reasons = "; ".join(f"v{f.version}: {f.reason}" for f in state.failures.values())
            raise ModelUnavailable(f"model {name!r} has no loadable version ({reasons or 'no versions'})")
        return state.served

    def not_ready(self) -> dict[str, str]:
        """Models with no loaded version, with the reason; empty when every model serves."""
        states = self.states()
        if not states:
            return {"<repository>": f"no models found in {self.root}"}
        return {
            name: "; ".join(f"v{f.version}: {f.reason}" for f in state.failures.values())
            or "no version folders"
            for name, state in states.items()
            if state.served is None
        }

    def _check_process(self) -> None:
        if lifecycle.process_id() != self._pid:
            raise RuntimeError(
                f"model sessions were created in process {self._pid} and used in {lifecycle.process_id()}: "
                "create the app after the fork (gunicorn without --preload)"
            )

    # --- refreshing (start-up, poller thread, admin endpoint) ---

    def refresh(self) -> None:
        """Rescan the repository and swap in newer valid versions; never raises for bad models."""
        with self._refresh_lock:
            phase = "startup" if self._scans == 0 else "refresh"
            self._scans += 1
            current = self._models
            if not self.root.is_dir():
                # A missing mount is more likely a hiccup than a wish to stop serving everything.
                log.error("model repository %s is not a directory; keeping what is loaded", self.root)
                return
            names = model_names(self.root)
            updated = {name: self._refresh_model(name, current.get(name), phase) for name in names}
            for name in current.keys() - updated.keys():
                log.warning("model folder %s disappeared; %s is no longer served", name, name,
                            extra={"model": name})
                metrics.forget_model(name)
            self._models = updated  # the atomic swap

    def _refresh_model(self, name: str, previous: ModelState | None, phase: str) -> ModelState:
        model_dir = self.root / name
        listing = tuple((v, fingerprint(model_dir / str(v))) for v in version_numbers(model_dir))
        if previous is not None and previous.listing == listing:
            return previous
        fingerprints = dict(listing)
        served = previous.served if previous else None
        served_fingerprint = previous.served_fingerprint if previous else None
        # Remember refusals only while the refused files are unchanged.
        failures = {
            version: failure
            for version, failure in (previous.failures.items() if previous else [])
            if fingerprints.get(version) == failure.fingerprint
        }
        for version in reversed(self._candidates(fingerprints, served, served_fingerprint)):
            if version in failures:
                continue
            try:
                candidate = self._load(model_dir, version, served)
            except InvalidVersion as exc:
                failures[version] = LoadFailure(version, str(exc), fingerprints[version])
                metrics.MODEL_LOAD_FAILURES.labels(model=name, phase=phase).inc()
                log.error("refused %s v%d: %s%s", name, version, exc,
                          "" if served is None else f"; {served.describe()} keeps serving",
                          extra={"model": name, "version": version, "phase": phase})
                continue
            served, served_fingerprint = candidate, fingerprints[version]
            metrics.MODEL_VERSION.labels(model=name).set(version)
            log.info("serving %s v%d on %s", name, version, candidate.providers[0],
                     extra={"model": name, "version": version, "provider": candidate.providers[0],
                            "providers": candidate.providers, "phase": phase})
            break
        return ModelState(name, served, served_fingerprint, listing, failures)

    @staticmethod
    def _candidates(
        fingerprints: dict[int, Fingerprint], served: LoadedModel | None, served_fingerprint: Fingerprint | None
    ) -> list[int]:
        """Versions worth trying, oldest first: those newer than the served one.

        If the served version's folder was removed (a rollback by deletion) every version on
        disk is a candidate; if its files were replaced in place, it is one again.
        """
        if served is None or served.number not in fingerprints:
            return sorted(fingerprints)
        return sorted(
            version
            for version, files in fingerprints.items()
            if version > served.number or (version == served.number and files != served_fingerprint)
        )

    def _load(self, model_dir: Path, version: int, served: LoadedModel | None) -> LoadedModel:
        model_version = read_version(model_dir, version)
        if served is not None and signature(model_version.manifest) != signature(served.manifest):
            raise InvalidVersion(
                f"its inputs/outputs differ from the served {served.describe()}; "
                "a signature change needs a restart, so clients are not broken mid-flight"
            )
        return LoadedModel(model_version, self.settings)

    # --- polling ---

    def start_polling(self, interval: float) -> None:
        if self._poller is not None:
            return
        self._poller = threading.Thread(target=self._poll, args=(interval,), name="model-refresh", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # keep polling: a filesystem hiccup must not end refreshes for good
                log.exception("repository scan failed")
