"""Query a collection: typed hits for RAG code.

The query is embedded with the model the collection records (and that model's
query instruction), so queries and passages always share one vector space.

>>> from search import Searcher
>>> with Searcher.open() as searcher:                     # ./qdrant_data, collection "wikipedia"
...     hits = searcher.search("the film where HAL 9000 turns on its crew", k=3)
>>> hits[0].title
'2001: A Space Odyssey'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ingest.embedders import Embedder, make_embedder
from ingest.errors import CollectionMismatchError, StoreError
from ingest.jobs import open_store
from ingest.settings import EmbedderSettings, StoreSettings
from ingest.store import QdrantStore
from schemas import CollectionSpec


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

    def __init__(self, store: QdrantStore, embedder: Embedder, spec: CollectionSpec) -> None:
        self.store, self.embedder, self.spec = store, embedder, spec

    @classmethod
    def open(
        cls,
        store_settings: StoreSettings | None = None,
        embedder_settings: EmbedderSettings | None = None,
        *,
        embedder: Embedder | None = None,
    ) -> "Searcher":
        store_settings = store_settings or StoreSettings()
        embedder_settings = embedder_settings or EmbedderSettings()
        store = open_store(store_settings)
        try:
            spec = store.read_spec()
            if spec is None:
                raise SearchError(
                    f"collection {store_settings.collection!r} does not exist at "
                    f"{store_settings.qdrant_url or store_settings.qdrant_path} (or was not built by this "
                    "tool): run `python -m ingest` first"
                )
            wanted = embedder_settings.model
            if wanted and wanted != spec.model.name and embedder_settings.embedder == "local":
                raise CollectionMismatchError(
                    f"collection {store_settings.collection!r} was built with {spec.model.name!r}; "
                    f"queries embedded with {wanted!r} would not match it: drop --model"
                )
            embedder = embedder or make_embedder(
                embedder_settings, model=spec.model.name, query_instruction=spec.model.query_instruction
            )
            check_embedder(spec, embedder, store_settings.collection)
        except BaseException:
            store.close()
            raise
        return cls(store, embedder, spec)

    def search(self, query: str, *, k: int = 5) -> list[Hit]:
        if not query.strip():
            raise SearchError("the query is empty")
        if k < 1:
            raise SearchError(f"k must be at least 1, got {k}")
        vector = self.embedder.embed_queries([query])[0]
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
            for rank, hit in enumerate(self.store.search(vector, limit=k), start=1)
        ]

    def close(self) -> None:
        self.embedder.close()
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
