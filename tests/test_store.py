import numpy as np
import pytest

from ingest.errors import CollectionMismatchError, LegacyStoreError
from ingest.settings import StoreSettings
from ingest.store import open_store
from ingest.store.edge import EdgeStore
from ingest.store.points import build_batch
from schemas import KNOWN_MODELS, Article, Chunk, CollectionSpec, ModelSpec, point_id
from tests.qdrant_standin import server_stand_in

MINILM = KNOWN_MODELS["sentence-transformers/all-MiniLM-L6-v2"]
SPEC = CollectionSpec(model=MINILM, chunking={"max_chars": 1000, "overlap_chars": 0, "title_prefix": True})


def pairs(n, dim=384):
    article = Article("a", "https://en.wikipedia.org/wiki/A", "A", "text " * n)
    chunks = [Chunk("a", i, f"text {i}", i, i + 1, f"A\ntext {i}") for i in range(n)]
    vectors = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    return [(article, c) for c in chunks], vectors


def test_the_collection_is_created_with_its_spec_and_upserts_are_idempotent(memory_store):
    assert memory_store.ensure_collection(SPEC) is True
    assert memory_store.read_spec() == SPEC
    items, vectors = pairs(5)
    memory_store.upsert_pairs(items, vectors)
    memory_store.upsert_pairs(items, vectors)
    assert memory_store.count() == 5
    hit = memory_store.search(vectors[3], limit=1)[0]
    assert hit.id == point_id("a", 3) and hit.payload["chunk_index"] == 3 and hit.score == pytest.approx(1.0)
    assert memory_store.ensure_collection(SPEC) is False  # same spec: accepted


def test_another_model_of_the_same_dimension_is_refused(memory_store):
    memory_store.ensure_collection(SPEC)
    bge = CollectionSpec(model=KNOWN_MODELS["BAAI/bge-small-en-v1.5"], chunking=SPEC.chunking)
    with pytest.raises(CollectionMismatchError, match="all-MiniLM-L6-v2.*refusing.*bge-small-en-v1.5"):
        memory_store.ensure_collection(bge)


def test_another_dimension_is_refused(memory_store):
    memory_store.ensure_collection(SPEC)
    wide = CollectionSpec(model=ModelSpec("my/model", 768, 512), chunking=SPEC.chunking)
    with pytest.raises(CollectionMismatchError, match="384-dimension.*768-dimension"):
        memory_store.ensure_collection(wide)


def test_other_chunking_is_refused_naming_the_setting(memory_store):
    memory_store.ensure_collection(SPEC)
    other = CollectionSpec(model=MINILM, chunking={**SPEC.chunking, "max_chars": 500})
    with pytest.raises(CollectionMismatchError, match="max_chars"):
        memory_store.ensure_collection(other)


def test_a_foreign_server_collection_with_points_is_refused():
    from qdrant_client import models

    server = server_stand_in("test")
    server.client.create_collection(
        "test", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
    )
    items, vectors = pairs(1)
    server.upsert(build_batch(items, vectors))
    with pytest.raises(CollectionMismatchError, match="not created by this tool"):
        server.ensure_collection(SPEC)


def test_the_spec_survives_reopening_the_folder(tmp_path):
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(SPEC)
    store.close()
    store = EdgeStore.open(tmp_path / "q", collection="wiki")
    try:
        assert store.read_spec() == SPEC
    finally:
        store.close()


def test_a_folder_of_an_earlier_version_is_refused_with_the_command_that_moves_it(tmp_path):
    old = server_stand_in("wiki", path=str(tmp_path / "q"))  # qdrant-client's local mode: the earlier default
    old.ensure_collection(SPEC)
    old.close()
    with pytest.raises(LegacyStoreError, match=r"earlier version.*python -m ingest migrate --qdrant-path .*/q`"):
        open_store(StoreSettings(qdrant_path=str(tmp_path / "q")))


def test_server_upserts_are_split_into_requests_bounded_in_bytes():
    from ingest.store.points import split_by_bytes

    items, vectors = pairs(50)
    parts = split_by_bytes(items, 384, max_bytes=20_000)
    assert len(parts) > 1 and [i for p in parts for i in range(*p.indices(50))] == list(range(50))
    assert split_by_bytes(items[:1], 384, max_bytes=10) == [slice(0, 1)]  # one big point still goes alone
    server = server_stand_in("test")
    server.ensure_collection(SPEC)
    server.max_request_bytes = 20_000
    requests = []
    upsert = server.upsert
    server.upsert = lambda batch: requests.append(len(batch.ids)) or upsert(batch)
    server.upsert_pairs(items, vectors)
    assert server.count() == 50 and len(requests) == len(parts) > 1


def test_both_backends_implement_the_whole_store_interface_with_its_signatures():
    import inspect

    from ingest.store import MemoryStore, Store
    from ingest.store.server import ServerStore

    members = [name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))]
    assert {"upsert_pairs", "search", "resolve", "point_alias", "scan_chunks", "at"} <= set(members)
    for backend in (EdgeStore, ServerStore, MemoryStore):
        for name in members:
            ours = inspect.signature(getattr(backend, name))
            wanted = inspect.signature(getattr(Store, name))
            assert list(ours.parameters)[: len(wanted.parameters)] == list(wanted.parameters), (backend, name)


def test_a_store_bound_to_another_collection_shares_the_connection(memory_store):
    from ingest.store import Store

    other = memory_store.at("other")
    assert isinstance(memory_store, Store) and isinstance(other, Store)
    assert other._folder is memory_store._folder and (other.collection, memory_store.collection) == ("other", "test")
    other.ensure_collection(SPEC)
    assert other.exists() and not memory_store.exists()
    memory_store.point_alias("live", "other", replace_alias=False)
    assert memory_store.resolve("live").collection == "other" and memory_store.aliases_of("other") == ["live"]
