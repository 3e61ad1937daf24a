"""The pipeline and the incremental algorithm, in milliseconds: the real chunker,
pipeline and manifest (SQLite in a temporary folder), with the public test backends
at the two boundaries, `MemoryStore` and `FakeEmbedder` (which counts its batches).

- `run_pipeline` alone: a first run, a re-run that embeds nothing, a changed article
  re-embedded chunk by chunk with the chunks it lost deleted, dead letters, and a
  store that is only a `PointWriter`;
- `run_ingest`, the job: a reindex deleting what the source lacks, a run stopped by
  a failure and resumed, and a rebuild moving the alias."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ingest.chunking import Chunker, ChunkingSettings
from ingest.embedders.base import Embedder
from ingest.embedders.fake import FakeEmbedder, deterministic_vectors
from ingest.errors import EmbedderError
from ingest.jobs import collection_spec, run_ingest, verify_collection
from ingest.pipeline.deadletters import MemorySink
from ingest.pipeline.run import run_pipeline
from ingest.settings import IngestSettings, StoreSettings
from ingest.state.manifest import Manifest
from ingest.store import MemoryStore, PointWriter
from schemas import point_id

pytestmark = pytest.mark.unit

CHUNKING = ChunkingSettings(max_chars=150)
WINDOW = 8


def row(i: int, *, sentences: int = 7, edited: bool = False) -> dict:
    """An article of a few chunks; `edited` changes its last sentence only."""
    body = [f"Sentence {s} of article {i} is about rivers, hills and the towns between them." for s in range(sentences)]
    if edited:
        body[-1] = f"The last sentence of article {i} was edited since."
    return {"id": str(i), "url": f"https://en.wikipedia.org/wiki/A{i}", "title": f"Article {i}", "text": " ".join(body)}


ROWS = [row(i) for i in range(20)]


@pytest.fixture
def manifest(tmp_path):
    with Manifest.open(tmp_path / "wiki.sqlite", collection="wiki", fingerprint="f", store="memory") as opened:
        yield opened


@pytest.fixture
def store():
    store = MemoryStore(collection="wiki")
    store.ensure_collection(collection_spec(IngestSettings(chunking=CHUNKING), FakeEmbedder()))
    return store


def pipeline(rows, store, manifest, embedder, sink=None, **kwargs):
    chunker = Chunker(CHUNKING, max_tokens=embedder.spec.max_tokens, count_tokens=embedder.count_tokens)
    return run_pipeline(
        rows,
        chunker=chunker,
        embedder=embedder,
        store=store,
        manifest=manifest,
        dead_letters=sink or MemorySink("test"),
        window=WINDOW,
        **kwargs,
    )


def chunks_of(store, article_id):
    return sorted(ref.chunk_index for page in store.scan_chunks() for ref in page if ref.article_id == article_id)


def test_a_first_run_embeds_every_chunk_in_full_windows_and_records_every_article(store, manifest):
    embedder = FakeEmbedder()
    assert isinstance(embedder, Embedder)
    summary = pipeline(ROWS, store, manifest, embedder)
    full, rest = divmod(summary.chunks, WINDOW)
    assert summary.chunks > 2 * len(ROWS) and embedder.batch_sizes == [WINDOW] * full + ([rest] if rest else [])
    assert (summary.added, summary.embedded, summary.points_written) == (20, summary.chunks, summary.chunks)
    assert store.count() == summary.chunks == len(embedder.passages) and manifest.count() == 20
    stored = store.stored_vectors([point_id("3", 0)])[point_id("3", 0)]
    first_of_3 = next(text for text in embedder.passages if text.startswith("Article 3"))
    np.testing.assert_allclose(stored.vector, deterministic_vectors([first_of_3])[0], atol=1e-6)


def test_a_rerun_of_an_unchanged_source_embeds_and_writes_nothing(store, manifest):
    pipeline(ROWS, store, manifest, FakeEmbedder())
    again = FakeEmbedder()
    summary = pipeline(ROWS, store, manifest, again)
    assert again.calls == 0 and (summary.unchanged, summary.points_written, summary.points_deleted) == (20, 0, 0)


def test_a_changed_article_embeds_only_its_changed_chunks_and_deletes_the_chunks_it_lost(store, manifest):
    first = pipeline(ROWS, store, manifest, FakeEmbedder())
    before = {i: chunks_of(store, str(i)) for i in (3, 5)}
    rows = [row(3, edited=True) if i == 3 else row(5, sentences=2) if i == 5 else r for i, r in enumerate(ROWS)]
    embedder = FakeEmbedder()
    summary = pipeline(rows, store, manifest, embedder)
    after = chunks_of(store, "5")
    assert (summary.changed, summary.unchanged) == (2, 18)
    assert embedder.passages == ["Article 3\nThe last sentence of article 3 was edited since."]  # that chunk alone
    assert summary.embedded == 1 and summary.reused == len(before[3]) - 1 + len(after)  # the others keep theirs
    assert 0 < len(after) < len(before[5]) and summary.points_deleted == len(before[5]) - len(after)
    assert store.count() == first.chunks - summary.points_deleted
    hashes = {ref.article_hash for page in store.scan_chunks() for ref in page if ref.article_id == "3"}
    assert hashes == {manifest.lookup(["3"])["3"].article_hash}  # every point of one version


def test_refused_chunks_and_bad_rows_are_dead_lettered_and_a_later_run_retries_only_the_refused(store, manifest):
    poisoned = dict(row(7), text=row(7)["text"] + " A poison sentence that the embedding server refuses.")
    rows = ROWS[:7] + [poisoned, {"id": "x", "url": "u", "text": "no title"}, dict(ROWS[2])] + ROWS[8:]
    sink = MemorySink("test")
    summary = pipeline(rows, store, manifest, FakeEmbedder(reject=lambda text: "poison" in text), sink)
    assert (summary.invalid, summary.duplicates, summary.rejected_chunks, summary.failed) == (1, 1, 1, 3)
    refused = [r for r in sink.records if r["kind"] == "chunk"]
    assert len(refused) == 1 and refused[0]["article_id"] == "7" and refused[0]["status"] == 413
    assert refused[0]["chunk_index"] not in chunks_of(store, "7") and manifest.lookup(["7"])["7"].rejected == 1
    assert [r["kind"] for r in sink.records].count("article") == 2  # the row without a title, the duplicate
    embedder = FakeEmbedder()
    retried = pipeline(rows, store, manifest, embedder)
    assert (retried.retried, retried.embedded, embedder.calls) == (1, 1, 1) and "poison" in embedder.passages[0]
    assert refused[0]["chunk_index"] in chunks_of(store, "7") and manifest.lookup(["7"])["7"].rejected == 0


def test_the_pipeline_needs_only_a_point_writer(manifest):
    """Four methods: write, find vectors to reuse, delete stale chunks, flush."""

    class OnlyWrites:
        def __init__(self, inner: MemoryStore) -> None:
            self.inner, self.calls = inner, []

        def upsert_pairs(self, pairs, vectors, definitions=None):
            self.calls.append("upsert_pairs")
            self.inner.upsert_pairs(pairs, vectors, definitions)

        def stored_vectors(self, point_ids):
            self.calls.append("stored_vectors")
            return self.inner.stored_vectors(point_ids)

        def delete_chunks(self, selections):
            self.calls.append("delete_chunks")
            return self.inner.delete_chunks(selections)

        def flush(self):
            self.calls.append("flush")

    inner = MemoryStore(collection="wiki")
    inner.ensure_collection(collection_spec(IngestSettings(chunking=CHUNKING), FakeEmbedder()))
    writer = OnlyWrites(inner)
    assert isinstance(writer, PointWriter)
    pipeline(ROWS, writer, manifest, FakeEmbedder())
    pipeline([row(5, sentences=2)], writer, manifest, FakeEmbedder())
    assert set(writer.calls) == {"upsert_pairs", "stored_vectors", "delete_chunks", "flush"}
    assert writer.calls[-1] == "flush"  # what the manifest records is durable first


# -- the job: run_ingest over the same backends ---------------------------------------------
def settings_for(tmp_path, rows, **kwargs) -> IngestSettings:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = StoreSettings(qdrant_path=str(tmp_path / "q"), state_dir=str(tmp_path / "state"), collection="wiki")
    return IngestSettings(
        **{
            "source": str(source),
            "progress": False,
            "window": WINDOW,
            "chunking": CHUNKING,
            "dead_letter": str(tmp_path / "dead.jsonl"),
            "store": store,
            **kwargs,
        }
    )


def test_a_reindex_deletes_the_articles_the_source_lacks(tmp_path):
    store = MemoryStore()
    first = run_ingest(settings_for(tmp_path, ROWS), store=store, embedder=FakeEmbedder())
    assert first.collection_points == first.chunks == store.at(first.collection).count()
    assert first.alias == f"wiki now leads to {first.collection}"
    gone = chunks_of(store.at(first.collection), "4") + chunks_of(store.at(first.collection), "9")
    kept = [r for r in ROWS if r["id"] not in ("4", "9")]
    embedder = FakeEmbedder()
    summary = run_ingest(settings_for(tmp_path, kept), mode="reindex", store=store, embedder=embedder)
    assert embedder.calls == 0 and (summary.deleted, summary.unchanged, summary.points_deleted) == (2, 18, len(gone))
    assert summary.collection == first.collection and summary.alias is None  # in place: the alias stays
    assert summary.collection_points == first.chunks - len(gone) == store.at(first.collection).count()
    assert verify_collection(settings_for(tmp_path, kept).store, store=store).in_sync


def test_a_run_stopped_by_a_failure_resumes_where_it_stopped(tmp_path):
    store = MemoryStore()
    failing = FakeEmbedder(fail_at=3)
    plain = replace(settings_for(tmp_path, ROWS), definitions="none")  # one text per chunk, to count them
    with pytest.raises(EmbedderError, match="went away"):
        run_ingest(plain, store=store, embedder=failing)
    assert failing.batch_sizes == [WINDOW, WINDOW] and store.resolve("wiki").collection is None  # no alias yet
    resumed = FakeEmbedder()
    summary = run_ingest(plain, store=store, embedder=resumed)
    assert not set(resumed.passages) & set(failing.passages)  # nothing embedded twice
    assert len(resumed.passages) == summary.embedded and summary.reused > 0  # a stopped article's stored chunks
    assert summary.collection_points == len(failing.passages) + len(resumed.passages)
    assert store.resolve("wiki").collection == summary.collection and summary.alias.startswith("wiki now leads to")
    assert verify_collection(settings_for(tmp_path, ROWS).store, store=store).in_sync


def test_other_chunking_builds_a_new_collection_and_moves_the_alias(tmp_path):
    store = MemoryStore()
    first = run_ingest(settings_for(tmp_path, ROWS), store=store, embedder=FakeEmbedder())
    rebuilt = run_ingest(
        settings_for(tmp_path, ROWS, chunking=ChunkingSettings(max_chars=300)), store=store, embedder=FakeEmbedder()
    )
    assert rebuilt.collection != first.collection and store.resolve("wiki").collection == rebuilt.collection
    assert rebuilt.alias == f"wiki now leads to {rebuilt.collection} (was {first.collection}, kept)"
    assert rebuilt.chunks < first.chunks and rebuilt.collection_points == rebuilt.chunks
