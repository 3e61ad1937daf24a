"""The jobs the command line runs, as plain functions over a settings object."""

from __future__ import annotations

import logging

from ingest.chunking import Chunker
from ingest.deadletter import DeadLetterFile
from ingest.embedders import Embedder, make_embedder
from ingest.pipeline import RunSummary, run_pipeline
from ingest.progress import Progress
from ingest.settings import IngestSettings, StoreSettings
from ingest.sources import open_source
from ingest.store import QdrantStore, open_client
from schemas import CollectionSpec

log = logging.getLogger(__name__)


def open_store(settings: StoreSettings) -> QdrantStore:
    client = open_client(
        path=settings.qdrant_path,
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key,
        prefer_grpc=settings.prefer_grpc,
        timeout=settings.timeout,
    )
    return QdrantStore(client, settings.collection)


def make_chunker(settings: IngestSettings, embedder: Embedder) -> Chunker:
    return Chunker(settings.chunking, max_tokens=embedder.spec.max_tokens, count_tokens=embedder.count_tokens)


def collection_spec(settings: IngestSettings, embedder: Embedder) -> CollectionSpec:
    return CollectionSpec(model=embedder.spec, chunking=settings.chunking.to_dict())


def run_ingest(settings: IngestSettings, *, embedder: Embedder | None = None) -> RunSummary:
    """Read the source, chunk, embed and upsert; the collection is created or checked first."""
    source = open_source(settings.source, limit=settings.limit)
    store = open_store(settings.store)
    own_embedder = embedder is None
    try:
        embedder = embedder or make_embedder(settings.embedder)
        created = store.ensure_collection(collection_spec(settings, embedder), bulk_load=True)
        log.info("ingesting %s into %s with %s", source.name, settings.store.collection, embedder.spec.name)
        summary = run_pipeline(
            source,
            chunker=make_chunker(settings, embedder),
            embedder=embedder,
            store=store,
            dead_letters=DeadLetterFile(settings.dead_letter),
            window=settings.window,
            progress=Progress(source.total, enabled=settings.progress),
        )
        if created:
            store.finish_bulk_load()
        summary.extra["collection_points"] = store.count()
        return summary
    finally:
        if own_embedder and embedder is not None:
            embedder.close()
        store.close()
