"""The Python API of ingestion: a source, a store and an embedder, given as objects.

`index` is what `python -m ingest` (and `reindex`) does, for a program that holds its
own store and embedder: new and changed articles are chunked, embedded and written,
unchanged ones cost nothing, a stopped run resumes, and `mode="reindex"` also deletes
the articles the source no longer has. What is indexed is recorded in a manifest under
`state_dir` (by default beside a store folder; in memory for an in-memory store, so
that only one run there can be incremental).

    >>> import tempfile
    >>> from ingest import FakeEmbedder, MemoryStore, index
    >>> articles = [
    ...     {"id": "1", "title": "Ada Lovelace", "url": "https://en.wikipedia.org/wiki/Ada_Lovelace",
    ...      "text": "Ada Lovelace was an English mathematician. She wrote the first published program."},
    ...     {"id": "2", "title": "Alan Turing", "url": "https://en.wikipedia.org/wiki/Alan_Turing",
    ...      "text": "Alan Turing was an English mathematician and computer scientist."},
    ... ]
    >>> store, embedder, state = MemoryStore("wiki"), FakeEmbedder(), tempfile.mkdtemp()
    >>> summary = index(articles, store=store, embedder=embedder, state_dir=state)
    >>> summary.added, summary.points_written, summary.collection_points
    (2, 2, 2)
    >>> again = index(articles, store=store, embedder=embedder, state_dir=state)   # nothing changed
    >>> again.unchanged, again.points_written, embedder.calls
    (2, 0, 1)

The real backends come from settings: `open_store(StoreSettings(qdrant_path="qdrant"))`
for the embedded store, `make_embedder(EmbedderSettings())` for the bundled model
(docs/python-api.md has the whole surface).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Literal, Mapping

from ingest.embedders import Embedder
from ingest.jobs import run_ingest
from ingest.pipeline.summary import RunSummary
from ingest.settings import ChunkingSettings, IngestSettings, StoreSettings
from ingest.sources import Source, open_source
from ingest.store import Store
from schemas import Article

Rows = Iterable[Mapping[str, Any] | Article]


def index(
    source: str | os.PathLike | Source | Rows,
    *,
    store: Store,
    embedder: Embedder,
    collection: str | None = None,
    state_dir: str | os.PathLike | None = None,
    mode: Literal["run", "reindex"] = "run",
    chunking: ChunkingSettings | None = None,
    sparse: Literal["bm25", "none"] = "bm25",
    limit: int | None = None,
    name: str = "python",
    dead_letter: str | os.PathLike = "dead_letter.jsonl",
    progress: bool = False,
    drop_old: bool = False,
    confirm: Callable[[str], bool] | None = None,
) -> RunSummary:
    """Bring `collection` (default: the one `store` is bound to) up to date with `source`.

    source: "sample" (the bundled sample), a hub dataset ("wikimedia/wikipedia:20231101.en"),
    a parquet or JSON-lines file or folder, an `ingest.sources.Source`, or any iterable of
    articles (`schemas.Article`, or mappings with id, url, title and text; a bad one is
    dead-lettered, the rest written). `name` stands for such an iterable in the manifest.
    `store` and `embedder` are used as given and left open. `confirm(question)` is asked
    before a reindex deletes more than a small share of the articles (without it such
    deletes are refused). Returns the run's counts (`RunSummary`)."""
    if isinstance(source, (str, os.PathLike)):
        opened, source_name = open_source(os.fspath(source), limit=limit), os.fspath(source)
    elif isinstance(source, Source):
        opened, source_name = source, source.name
    else:
        rows = (_row(item) for item in source)
        opened, source_name = Source(name, rows, None), name
    settings = IngestSettings(
        source=source_name,
        limit=limit,
        dead_letter=os.fspath(dead_letter),
        progress=progress,
        chunking=chunking or ChunkingSettings(),
        sparse=sparse,
        drop_old=drop_old,
        store=_store_settings(store, collection or store.collection, state_dir),
    )
    return run_ingest(settings, store=store, embedder=embedder, source=opened, mode=mode, confirm=confirm)


def _row(item: Mapping[str, Any] | Article) -> Mapping[str, Any]:
    if isinstance(item, Article):
        return {"id": item.id, "url": item.url, "title": item.title, "text": item.text}
    return item


def _store_settings(store: Store, collection: str, state_dir: str | os.PathLike | None) -> StoreSettings:
    """Where the manifest goes for `store`: `state_dir`, else beside its folder (in memory
    for an in-memory store, `./ingest_state` for a server)."""
    location = str(store.location)
    server = location.startswith(("http://", "https://"))
    return StoreSettings(
        qdrant_path=":memory:" if server else location,
        qdrant_url=location if server else None,
        collection=collection,
        state_dir=os.fspath(state_dir) if state_dir is not None else None,
    )
