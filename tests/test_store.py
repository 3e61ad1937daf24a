import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ingest.errors import CollectionMismatchError, StoreLockedError
from ingest.store.local import LocalStore
from ingest.store.points import build_batch
from schemas import KNOWN_MODELS, Article, Chunk, CollectionSpec, ModelSpec, point_id

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
    memory_store.upsert(build_batch(items, vectors))
    memory_store.upsert(build_batch(items, vectors))
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


def test_a_foreign_collection_with_points_is_refused(memory_store):
    from qdrant_client import models

    memory_store.client.create_collection(
        "test", vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE)
    )
    items, vectors = pairs(1)
    memory_store.upsert(build_batch(items, vectors))
    with pytest.raises(CollectionMismatchError, match="not created by this tool"):
        memory_store.ensure_collection(SPEC)


def test_the_spec_survives_reopening_local_storage(tmp_path):
    store = LocalStore.open(tmp_path / "q", collection="wiki")
    store.ensure_collection(SPEC)
    store.close()
    store = LocalStore.open(tmp_path / "q", collection="wiki")
    try:
        assert store.read_spec() == SPEC
    finally:
        store.close()


def test_a_storage_folder_held_by_another_process_gives_a_clear_message(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from qdrant_client import QdrantClient
            client = QdrantClient(path={str(tmp_path / "q")!r})
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="in use by another process.*--qdrant-url"):
            LocalStore.open(tmp_path / "q", collection="wiki")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_bulk_load_settings_are_harmless_in_local_mode(memory_store):
    assert isinstance(memory_store, LocalStore)
    memory_store.ensure_collection(SPEC, bulk_load=True)  # local mode has no graph or payload index
    memory_store.finish_bulk_load(wait_seconds=5)
    assert memory_store.hnsw_m() == 16


def test_upserts_are_split_into_requests_bounded_in_bytes(memory_store):
    from ingest.store.points import split_by_bytes

    items, vectors = pairs(50)
    parts = split_by_bytes(items, 384, max_bytes=20_000)
    assert len(parts) > 1 and [i for p in parts for i in range(*p.indices(50))] == list(range(50))
    assert split_by_bytes(items[:1], 384, max_bytes=10) == [slice(0, 1)]  # one big point still goes alone
    memory_store.ensure_collection(SPEC)
    memory_store.max_request_bytes = 20_000
    memory_store.upsert_pairs(items, vectors)
    assert memory_store.count() == 50


def test_both_backends_implement_the_whole_store_interface_with_its_signatures():
    import inspect

    from ingest.store import Store
    from ingest.store.server import ServerStore

    members = [name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")]
    assert {"upsert_pairs", "search", "resolve", "point_alias", "scan_chunks", "at"} <= set(members)
    for backend in (LocalStore, ServerStore):
        for name in members:
            ours = inspect.signature(getattr(backend, name))
            wanted = inspect.signature(getattr(Store, name))
            assert list(ours.parameters)[: len(wanted.parameters)] == list(wanted.parameters), (backend, name)


def test_a_store_bound_to_another_collection_shares_the_connection(memory_store):
    from ingest.store import Store

    other = memory_store.at("other")
    assert isinstance(memory_store, Store) and isinstance(other, Store)
    assert other.client is memory_store.client and (other.collection, memory_store.collection) == ("other", "test")
    other.ensure_collection(SPEC)
    assert other.exists() and not memory_store.exists()
    memory_store.point_alias("live", "other", replace_alias=False)
    assert memory_store.resolve("live").collection == "other" and memory_store.aliases_of("other") == ["live"]
