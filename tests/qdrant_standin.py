"""A stand-in for a Qdrant server in tests: the server backend (`ServerStore`)
over qdrant-client's local mode, qdrant-client's own in-process implementation of
the server's API (the reader of earlier versions' folders is exactly that)."""

from __future__ import annotations

from ingest.store.legacy import LegacyStore
from ingest.store.server import ServerStore


def server_stand_in(collection: str = "wiki", path: str = ":memory:") -> ServerStore:
    return LegacyStore.open(path, collection=collection)


def edge_points(path, name: str = "wiki") -> dict[str, tuple[dict, list[float], dict]]:
    """Every point of what `name` leads to in the Edge folder `path`: payload, dense
    vector and sparse vector (as {index: weight}), read from the engine itself."""
    from ingest.store.edge import EdgeStore

    store = EdgeStore.open(path, collection=name)
    try:
        store = store.at(store.resolve(name).collection or name)
        found = {}
        for page in store.export_points():
            ids = [p.id for p in page]
            sparse = {str(r.id): r.vector.get("bm25") for r in store._shard.retrieve(ids, False, ["bm25"])}
            for p in page:
                vector = sparse.get(p.id)
                found[p.id] = (
                    p.payload,
                    p.vector.tolist(),
                    dict(zip(vector.indices, vector.values)) if vector is not None else {},
                )
        return found
    finally:
        store.close()


def stored_spec(path, name: str = "wiki"):
    """The build record of what `name` leads to in the Edge folder `path`."""
    from ingest.store.edge import EdgeStore

    store = EdgeStore.open(path, collection=name)
    try:
        return store.at(store.resolve(name).collection or name).read_spec()
    finally:
        store.close()
