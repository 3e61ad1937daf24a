"""Query a collection: typed hits for RAG code.

The query is embedded with the model the collection records (and that model's
query instruction), so queries and passages always share one vector space.

The collection name is usually an alias (`ingest.rebuild`): a searcher resolves it
when it opens and queries that physical collection, so that a rebuild under way
never shows, and checks where the alias leads at most every `refresh_seconds`
(and whenever its collection is gone). When the alias has moved, it follows: with
the same embedder if the model is the same, with a new one (for the new model) if
it made its embedder itself; a searcher given an embedder of another model refuses.

>>> from search import Searcher
>>> with Searcher.open() as searcher:                     # ./qdrant_data, collection "wikipedia"
...     hits = searcher.search("the film where HAL 9000 turns on its crew", k=3)
>>> hits[0].title
'2001: A Space Odyssey'
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable

from qdrant_client import QdrantClient

from ingest.embedders import Embedder, make_embedder
from ingest.errors import CollectionMismatchError, StoreError
from ingest.jobs import client_for
from ingest.settings import EmbedderSettings, StoreSettings
from ingest.store import QdrantStore, resolve
from schemas import CollectionSpec

log = logging.getLogger(__name__)


class SearchError(StoreError):
    """The collection cannot be searched as asked."""


@dataclass(frozen=True, slots=True)
class Hit:
    rank: int
    score: float
    article_id: str
    title: str
    url: str
    text: str
    chunk_index: int
    point_id: str

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """A store and the embedder its collection was built with, opened once for many queries."""

    def __init__(self, store: QdrantStore, embedder: Embedder, spec: CollectionSpec, *, name: str | None = None,
                 refresh_seconds: float = 60.0, embedder_for: Callable[[CollectionSpec], Embedder] | None = None,
                 owns_client: bool = True) -> None:
        self.store, self.embedder, self.spec = store, embedder, spec
        self.name = name or store.collection  # what the user asked for: an alias, usually
        self.refresh_seconds = refresh_seconds
        self._embedder_for = embedder_for  # None: the embedder was given, and is kept
        self._owns_client = owns_client
        self._checked = time.monotonic()

    @classmethod
    def open(
        cls,
        store_settings: StoreSettings | None = None,
        embedder_settings: EmbedderSettings | None = None,
        *,
        embedder: Embedder | None = None,
        client: QdrantClient | None = None,
        refresh_seconds: float = 60.0,
    ) -> "Searcher":
        """Open the collection `store_settings.collection` leads to. `client` is
        shared and left open when given (local mode allows one per folder)."""
        store_settings = store_settings or StoreSettings()
        embedder_settings = embedder_settings or EmbedderSettings()
        name = store_settings.collection
        owns_client = client is None
        client = client or client_for(store_settings)
        try:
            collection = resolve(client, name).collection
            spec = QdrantStore(client, collection).read_spec() if collection else None
            if spec is None:
                raise SearchError(
                    f"collection {name!r} does not exist at "
                    f"{store_settings.qdrant_url or store_settings.qdrant_path} (or was not built by this "
                    "tool): run `python -m ingest` first"
                )
            wanted = embedder_settings.model
            if wanted and wanted != spec.model.name and embedder_settings.embedder == "local":
                raise CollectionMismatchError(
                    f"collection {name!r} was built with {spec.model.name!r}; "
                    f"queries embedded with {wanted!r} would not match it: drop --model"
                )
            embedder_for = None
            if embedder is None:
                def embedder_for(spec: CollectionSpec) -> Embedder:
                    return make_embedder(embedder_settings, model=spec.model.name,
                                         query_instruction=spec.model.query_instruction)

                embedder = embedder_for(spec)
            check_embedder(spec, embedder, name)
        except BaseException:
            if owns_client:
                client.close()
            raise
        return cls(QdrantStore(client, collection), embedder, spec, name=name, refresh_seconds=refresh_seconds,
                   embedder_for=embedder_for, owns_client=owns_client)

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        if not query.strip():
            raise SearchError("the query is empty")
        if k < 1:
            raise SearchError(f"k must be at least 1, got {k}")
        self.follow_alias()
        vector = self.embedder.embed_queries([query])[0]
        try:
            found = self.store.search(vector, limit=k)
        except Exception:
            if self.store.client.collection_exists(self.store.collection):
                raise
            self.follow_alias(force=True)  # dropped after a rebuild: the alias leads elsewhere now
            vector = self.embedder.embed_queries([query])[0]
            found = self.store.search(vector, limit=k)
        return [
            Hit(
                rank=rank,
                score=hit.score,
                article_id=str(hit.payload.get("id", "")),
                title=str(hit.payload.get("title", "")),
                url=str(hit.payload.get("url", "")),
                text=str(hit.payload.get("text", "")),
                chunk_index=int(hit.payload.get("chunk_index", 0)),
                point_id=hit.id,
            )
            for rank, hit in enumerate(found, start=1)
        ]

    def follow_alias(self, *, force: bool = False) -> None:
        """Move to the collection the name leads to now, if it moved (checked at
        most every `refresh_seconds` unless `force`)."""
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_seconds:
            return
        self._checked = now
        collection = resolve(self.store.client, self.name).collection
        if collection is None or collection == self.store.collection:
            return
        spec = QdrantStore(self.store.client, collection).read_spec()
        if spec is None:
            return
        embedder = self.embedder
        try:
            check_embedder(spec, embedder, self.name)
        except CollectionMismatchError:
            if self._embedder_for is None:
                raise
            embedder = self._embedder_for(spec)
            check_embedder(spec, embedder, self.name)
            self.embedder.close()
        log.info("%s now leads to %s (was %s)", self.name, collection, self.store.collection)
        self.store, self.embedder, self.spec = QdrantStore(self.store.client, collection), embedder, spec

    def close(self) -> None:
        self.embedder.close()
        if self._owns_client:
            self.store.close()

    def __enter__(self) -> "Searcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_embedder(spec: CollectionSpec, embedder: Embedder, collection: str) -> None:
    """Refuse a query embedder that is not the collection's model."""
    got = embedder.spec
    if got.name != spec.model.name or got.dimension != spec.dimension:
        raise CollectionMismatchError(
            f"collection {collection!r} was built with {spec.model.name!r} ({spec.dimension} dims) but the "
            f"query embedder serves {got.name!r} ({got.dimension} dims): point it at the same model"
        )
    if got.query_instruction != spec.model.query_instruction:
        raise CollectionMismatchError(
            f"collection {collection!r} expects the query instruction {spec.model.query_instruction!r}, "
            f"the embedder would use {got.query_instruction!r}"
        )


def search(query: str, *, k: int = 5, store: StoreSettings | None = None,
           embedder: EmbedderSettings | None = None) -> list[Hit]:
    """One-shot search; open a `Searcher` to run many queries."""
    with Searcher.open(store, embedder) as searcher:
        return searcher.search(query, k=k)
