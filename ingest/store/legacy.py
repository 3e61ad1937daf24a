"""Folders written by earlier versions, whose embedded store was qdrant-client's
local mode (`qdrant_data/meta.json` and `qdrant_data/collection/<name>/`): found,
so that no run mistakes one for an empty store, and read once, so that
`python -m ingest migrate` moves its points into Qdrant Edge with their vectors,
without embedding again.

Local mode speaks the server's API in process, so the reader is a `ServerStore`
over it, without the server's indexes and one call at a time (local mode has no
locks). Nothing here writes to such a folder except `remove_legacy`, after a
migration has checked every point landed.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from qdrant_client import QdrantClient

from ingest.errors import StoreError, StoreLockedError
from ingest.store.server import ServerStore

_FILES = ("meta.json", ".lock")


def is_legacy(path: str | Path) -> bool:
    """True when `path` holds a store written by qdrant-client's local mode."""
    path = Path(path)
    return (path / "meta.json").is_file() and (path / "collection").is_dir()


class LegacyStore(ServerStore):
    """One collection of a local-mode folder, for reading (the tests also write through
    it, in ":memory:", as a stand-in for a Qdrant server's API)."""

    _server_indexes = False
    _rescore = None  # exact search: no quantization to rescore

    @classmethod
    def open(cls, path: str | Path, *, collection: str = "") -> LegacyStore:
        try:
            client = QdrantClient(location=":memory:") if str(path) == ":memory:" else QdrantClient(path=str(path))
            store = cls(client, collection, location=str(path))
        except RuntimeError as exc:  # local mode's "already accessed by another instance"
            raise StoreLockedError(
                f"the Qdrant storage folder {path} is in use by another process: wait for it to finish"
            ) from exc
        except Exception as exc:
            raise StoreError(f"cannot read the earlier store at {path}: {type(exc).__name__}: {exc}") from exc
        store._guard = threading.RLock()
        return store

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}


def remove_legacy(path: str | Path) -> None:
    """Delete the local-mode files of `path` (its collections, `meta.json`, the lock)."""
    path = Path(path)
    shutil.rmtree(path / "collection", ignore_errors=True)
    for name in _FILES:
        (path / name).unlink(missing_ok=True)
