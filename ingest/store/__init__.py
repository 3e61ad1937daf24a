"""Where the vectors live, behind small interfaces (`PointWriter`, `PointReader`, `Catalogue`,
and `Store`, all three, in `ingest.store.base`):

- `ingest.store.edge`: the embedded default, a folder of Qdrant Edge shards (Qdrant's own engine in process);
- `ingest.store.server`: a Qdrant server or cluster (`--qdrant-url`);
- `ingest.store.legacy`: folders written by earlier versions (qdrant-client's local mode), read to migrate them;
- `ingest.store.memory`: `MemoryStore`, plain Python in this process, for tests (built directly).

`open_store(settings)` picks the backend the settings name."""

from __future__ import annotations

from ingest.errors import LegacyStoreError
from ingest.settings import StoreSettings
from ingest.store.base import (
    Catalogue,
    ChunkRef,
    ChunkSelection,
    PayloadFilter,
    PointReader,
    PointWriter,
    Resolved,
    Store,
    StoredHit,
    StoredPoint,
    StoredVector,
)
from ingest.store.edge import EdgeStore
from ingest.store.legacy import is_legacy
from ingest.store.memory import MemoryStore
from ingest.store.server import ServerStore

__all__ = [
    "Catalogue",
    "ChunkRef",
    "ChunkSelection",
    "MemoryStore",
    "PayloadFilter",
    "PointReader",
    "PointWriter",
    "Resolved",
    "Store",
    "StoredHit",
    "StoredPoint",
    "StoredVector",
    "open_live",
    "open_store",
]


def open_store(settings: StoreSettings, collection: str | None = None, *, create: bool = True) -> Store:
    """A store bound to `collection` (default: the settings' name, as given: an alias,
    usually; `store.at(store.resolve(name).collection)` follows it). `create=False`
    (search) refuses a folder that holds no store rather than make an empty one."""
    collection = collection or settings.collection
    if settings.qdrant_url:
        return ServerStore.connect(
            settings.qdrant_url,
            collection=collection,
            api_key=settings.qdrant_api_key,
            prefer_grpc=settings.prefer_grpc,
            timeout=settings.timeout,
            location=settings.location,
            layout=settings.layout,
            grpc_port=settings.grpc_port_used,
        )
    path = settings.qdrant_path or "qdrant_data"
    if is_legacy(path):
        raise LegacyStoreError(
            f"{path} was written by an earlier version of this tool (qdrant-client's local mode, no longer "
            f"read): move it into the current engine, vectors and all, with `python -m ingest migrate "
            f"--qdrant-path {path}` (nothing is embedded again)"
        )
    return EdgeStore.open(path, collection=collection, create=create)


def open_live(settings: StoreSettings) -> Store:
    """A store bound to the collection the settings' name leads to now (through its
    alias, if any; the name itself when nothing has it yet)."""
    store = open_store(settings)
    return store.at(store.resolve(settings.collection).collection or settings.collection)
