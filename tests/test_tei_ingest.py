"""A whole ingest through the TEI backend under faults: a real loopback server that
answers 429/503 to a fifth of the requests and drops 1% of the connections, and
one input it always refuses. Exactly the expected points land, once each."""

import json

from ingest.chunking import Chunker
from ingest.embedders.tei import TEIEmbedder
from ingest.jobs import collection_spec, make_chunker
from ingest.pipeline.deadletters import DeadLetterFile
from ingest.pipeline.run import run_pipeline
from ingest.rehearsal.tei import Faults, TEIServer
from ingest.settings import IngestSettings
from ingest.store.edge import EdgeStore
from schemas import Article, point_id

POISON = "zzpoisonzz"


def test_faulty_server_loses_nothing_and_duplicates_nothing(tmp_path, sample):
    rows = [dict(row) for row in sample[:300]]
    rows[42]["text"] += f" {POISON} cannot be embedded."
    faults = Faults(rate_429=0.1, rate_503=0.1, drop_rate=0.01, retry_after="0", poison=POISON, seed=7)
    settings = IngestSettings(window=64)
    with TEIServer(model_id="BAAI/bge-small-en-v1.5", max_client_batch_size=2, faults=faults) as server:
        embedder = TEIEmbedder(
            server.url, max_concurrency=4, retry_initial_wait=0.001, retry_max_wait=0.01, timeout=5.0
        )
        store = EdgeStore.open(":memory:", collection="wiki")
        try:
            store.ensure_collection(collection_spec(settings, embedder))
            summary = run_pipeline(
                rows,
                chunker=make_chunker(settings, embedder),
                embedder=embedder,
                store=store,
                dead_letters=DeadLetterFile(tmp_path / "dead.jsonl"),
                window=settings.window,
            )
            stored_ids = [point_id(ref.article_id, ref.chunk_index) for page in store.scan_chunks() for ref in page]
        finally:
            embedder.close()
            store.close()
        statuses = server.received.statuses

    chunker = Chunker(settings.chunking, max_tokens=512)
    chunks = [c for row in rows for c in chunker.chunks(Article.from_row(row))]
    poisoned = [c for c in chunks if POISON in c.embed_text]
    expected = {point_id(c.article_id, c.chunk_index) for c in chunks if POISON not in c.embed_text}
    assert len(poisoned) == 1
    assert statuses[429] > 0 and statuses[503] > 0 and statuses["drop"] > 0  # the faults did happen
    assert len(stored_ids) == len(set(stored_ids)) == len(expected)
    assert set(stored_ids) == expected
    assert summary.points_written == len(expected) and summary.rejected_chunks == 1
    assert summary.retries["429"] > 0 and summary.retries["503"] > 0  # by cause, in the summary
    assert "; embedder retries: " in summary.report() and "429 " in summary.report()
    (record,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert record["kind"] == "chunk" and record["article_id"] == rows[42]["id"]
    assert record["chunk_index"] == poisoned[0].chunk_index and record["status"] == 422 and record["message"]
