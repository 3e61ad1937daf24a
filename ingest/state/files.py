"""Where a store's state lives: one manifest (SQLite) per physical collection and
a run lock beside it, in a folder next to a local store (`qdrant_data-state`) or
`./ingest_state` for a server, or `--state-dir`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ingest.errors import RunLockedError
from ingest.settings import StoreSettings
from ingest.state.manifest import Manifest

Checkpoint = Callable[[Manifest], None]


def default_state_dir(qdrant_path: str | None, qdrant_url: str | None) -> Path | None:
    """Next to a local store (`qdrant_data` -> `qdrant_data-state`); `./ingest_state`
    for a server; None (in memory) for a ":memory:" store."""
    if qdrant_url:
        return Path("ingest_state")
    if qdrant_path in (None, ":memory:"):
        return None
    path = Path(qdrant_path)
    return path.with_name(path.name + "-state")


def manifest_path(state_dir: Path, collection: str) -> Path:
    return state_dir / f"{collection}.sqlite"


class RunLock:
    """One writer per collection: an advisory lock file beside its manifest.
    Released by the kernel when the process dies, however it dies."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handle = None

    def __enter__(self) -> RunLock:
        if self.path is None:
            return self
        import fcntl  # POSIX only, and only a run that writes needs it

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(
                f"another run is writing this collection ({holder} holds {self.path}): wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def state_dir(settings: StoreSettings) -> Path | None:
    if settings.state_dir:
        return Path(settings.state_dir)
    return default_state_dir(settings.qdrant_path, settings.qdrant_url)


def open_manifest(
    settings: StoreSettings, collection: str, fingerprint: str, *, checkpoint: Checkpoint | None = None
) -> Manifest:
    folder = state_dir(settings)
    if folder is None:
        return Manifest.memory()
    # where the store is, without credentials: a URL's user:password@ or ?api_key= never lands on disk
    store = settings.location if settings.qdrant_url else str(Path(settings.qdrant_path).resolve())
    return Manifest.open(
        manifest_path(folder, collection),
        collection=collection,
        fingerprint=fingerprint,
        store=store,
        checkpoint=checkpoint,
    )


def run_lock(settings: StoreSettings, collection: str) -> RunLock:
    folder = state_dir(settings)
    return RunLock(folder / f"{collection}.lock" if folder is not None else None)


def remove_state(settings: StoreSettings, collection: str) -> None:
    """Forget the manifest of a collection that was dropped."""
    folder = state_dir(settings)
    if folder is None:
        return
    base = manifest_path(folder, collection)
    for path in (
        base,
        base.with_name(base.name + "-wal"),
        base.with_name(base.name + "-shm"),
        folder / f"{collection}.lock",
    ):
        path.unlink(missing_ok=True)
