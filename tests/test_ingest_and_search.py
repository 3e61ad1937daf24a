"""End to end on real parts: the bundled model, the bundled sample, qdrant-client local mode."""

import json
from dataclasses import replace

import pytest

from ingest.chunking import ChunkingSettings
from ingest.errors import CollectionMismatchError, RebuildError
from ingest.jobs import run_ingest
from ingest.settings import EmbedderSettings, IngestSettings, StoreSettings
from ingest.sources import sample_rows
from ingest.store import open_live as open_store
from ingest.store.edge import EdgeStore
from schemas import KNOWN_MODELS, CollectionSpec, point_id
from search import Searcher

HAL_QUERY = "the space film in which the computer HAL 9000 turns on its crew"
SAMPLE_ROWS = sample_rows()[:10]


def write_rows(folder, rows, name="rows.jsonl"):
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def settings_for(tmp_path, source="sample", limit=40, **kwargs):
    return IngestSettings(
        source=source,
        limit=limit,
        progress=False,
        dead_letter=str(tmp_path / "dead_letter.jsonl"),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
        **kwargs,
    )


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, local_embedder):
    tmp_path = tmp_path_factory.mktemp("ingest")
    settings = settings_for(tmp_path)
    summary = run_ingest(settings, embedder=local_embedder)
    return tmp_path, settings, summary


def test_ingest_writes_one_point_per_chunk_and_reports_it(ingested):
    _, settings, summary = ingested
    assert summary.articles == 40 and summary.invalid == 0 and summary.rejected_chunks == 0
    assert summary.chunks >= 40 and summary.points_written == summary.chunks
    assert summary.collection_points == summary.chunks
    assert 0 < summary.embed_seconds <= summary.seconds
    line = summary.line()
    assert "articles read 40" in line and "chunks/s" in line and "embedder" in line


def test_search_finds_the_article_and_cites_it(ingested, local_embedder):
    _, settings, _ = ingested
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        hits = searcher.search(HAL_QUERY, k=3)
    assert hits[0].title == "2001: A Space Odyssey"
    assert hits[0].url == "https://en.wikipedia.org/wiki/2001:_A_Space_Odyssey"
    assert "Kubrick" in hits[0].text and hits[0].point_id == point_id(hits[0].article_id, hits[0].chunk_index)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score


def test_a_rerun_finds_everything_indexed_and_writes_nothing(ingested, local_embedder):
    _, settings, first = ingested
    again = run_ingest(settings, embedder=local_embedder)
    assert (again.unchanged, again.added, again.changed, again.chunks, again.points_written) == (40, 0, 0, 0, 0)
    assert again.collection_points == first.collection_points


def test_search_refuses_a_query_model_other_than_the_collections(ingested):
    _, settings, _ = ingested
    with pytest.raises(CollectionMismatchError, match="built with 'sentence-transformers/all-MiniLM-L6-v2'"):
        Searcher.open(settings.store, EmbedderSettings(model="BAAI/bge-small-en-v1.5"))


def test_a_legacy_collection_of_another_model_is_replaced_only_with_drop_old(tmp_path, local_embedder):
    settings = settings_for(tmp_path, limit=3)
    store = open_store(settings.store)  # a plain collection named "wiki", as built before aliases
    store.ensure_collection(
        CollectionSpec(model=KNOWN_MODELS["BAAI/bge-small-en-v1.5"], chunking=settings.chunking.to_dict())
    )
    store.close()
    with pytest.raises(RebuildError, match="before collections had aliases.*--drop-old"):
        run_ingest(settings, embedder=local_embedder)
    summary = run_ingest(
        replace(settings, limit=None, source=str(write_rows(tmp_path, SAMPLE_ROWS[:3])), drop_old=True),
        embedder=local_embedder,
    )
    assert summary.alias == f"wiki now leads to {summary.collection} (was wiki, dropped)"
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        assert searcher.spec.model.name == local_embedder.spec.name and searcher.search("art", k=1)


def test_other_chunk_settings_with_a_limit_build_aside_and_leave_the_alias(ingested, local_embedder):
    tmp_path, settings, _ = ingested
    changed = settings_for(tmp_path, limit=3, chunking=ChunkingSettings(max_chars=500))
    summary = run_ingest(changed, embedder=local_embedder)
    assert summary.collection != "wiki" and summary.articles == 3
    assert "wiki still leads to" in summary.alias and "--limit" in summary.alias
    with Searcher.open(settings.store, embedder=local_embedder) as searcher:
        assert searcher.spec.chunking["max_chars"] == 1000


def test_invalid_articles_are_dead_lettered_and_the_rest_lands(tmp_path, local_embedder, sample):
    rows = [dict(sample[0]), {**sample[1], "text": None}, dict(sample[2]), {**sample[3], "title": ""}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = settings_for(tmp_path, source=str(path), limit=None)
    summary = run_ingest(settings, embedder=local_embedder)
    assert summary.invalid == 2 and summary.articles == 4
    assert summary.points_written == summary.chunks >= 2
    records = [json.loads(line) for line in (tmp_path / "dead_letter.jsonl").read_text().splitlines()]
    assert [r["article_id"] for r in records] == [sample[1]["id"], sample[3]["id"]]
    assert "'text' must be a string" in records[0]["message"] and "'title' is empty" in records[1]["message"]
    assert summary.dead_letter == str(tmp_path / "dead_letter.jsonl")


class FailingAfter:
    """The real embedder, with a fault injected after `calls` successful calls."""

    def __init__(self, inner, calls):
        self.inner, self.calls, self.spec = inner, calls, inner.spec

    def embed_passages(self, texts):
        if self.calls == 0:
            raise RuntimeError("embedding server went away")
        self.calls -= 1
        return self.inner.embed_passages(texts)

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def close(self):
        pass


def test_a_failure_mid_run_keeps_what_was_written_and_a_rerun_finishes_the_rest(tmp_path, local_embedder):
    settings = settings_for(tmp_path, limit=30, window=8)
    with pytest.raises(RuntimeError, match="went away"):
        run_ingest(settings, embedder=FailingAfter(local_embedder, calls=2))
    store = EdgeStore.open(tmp_path / "qdrant", collection="wiki")
    try:
        (collection,) = [p.name for p in (tmp_path / "qdrant" / "edge" / "shards").iterdir()]
        assert store.at(collection).count() == 16  # two windows of 8 were embedded and written before the fault
        assert store.resolve("wiki").collection is None  # no alias: never complete, never searched
    finally:
        store.close()
    again = run_ingest(settings, embedder=local_embedder)
    assert again.chunks + 16 >= again.collection_points and again.reused <= 16
    assert again.alias == f"wiki now leads to {collection}"
