"""The store boundary: one interface (`Store`) that the pipeline, the state code
and search talk to, whatever holds the vectors.

A `Store` is a connection to one Qdrant (a server or cluster, or an engine
embedded in this process) bound to one collection; `at(name)` gives the same
connection bound to another. Everything that crosses the boundary is plain data
defined here (`StoredHit`, `ChunkSelection`, `PayloadFilter`, `Resolved`), never a
backend's own types, so that a backend is one module: `ingest.store.server`
(qdrant-client against a server) and `ingest.store.edge` (the embedded default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from schemas import Article, Chunk, CollectionSpec

# Payload fields that search filters on (one article's chunks, by title or url).
FILTER_FIELDS = ("id", "title", "url")
FUSION_DEPTH = 50  # at least this many candidates from each ranking of a hybrid search
# Reciprocal rank fusion's constant, given explicitly so that a ranking does not depend on
# where the collection lives (Qdrant's server default is 2 as well).
# On the shipped question set 2 beat 10 and 60: recall@1 0.921 against 0.913 and 0.913,
# MRR 0.958 against 0.955 and 0.953; and it did as well on the short queries.
RRF_K = 2
# The rankings' weights in the fusion, dense then lexical (Qdrant's weighted RRF, a
# server's since 1.17). With k = 2 and equal weights, a passage first in one ranking
# and second in the other ties exactly with one the other way round, and Qdrant
# leaves ties in no set order; a shade more weight on the lexical side settles them
# its way. Measured over the bundled sample: long questions recall@1 0.913 -> 0.962,
# short queries 0.552 -> 0.570 (tuning set) and 0.682 -> 0.725 (held out).
RRF_WEIGHTS = (1.0, 1.05)

SparseQuery = tuple[list[int], list[float]]  # a query's lexical vector: term ids and weights
ChunkRef = tuple[str, int, str]  # (article id, chunk index, article hash) of a stored point


@dataclass(frozen=True, slots=True)
class StoredHit:
    id: str
    score: float  # what ranked it: cosine similarity, or the fused score of a hybrid search
    payload: dict[str, Any]
    similarity: float  # cosine similarity to the query


@dataclass(frozen=True, slots=True)
class StoredPoint:
    """A point as it is moved between stores: its dense vector and payload (its
    lexical vector is made again from the text, by the store it goes to)."""

    id: str
    vector: np.ndarray
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChunkSelection:
    """Some chunks of one article: every chunk from `from_index` on, and `indices`."""

    article_id: str
    from_index: int | None = None
    indices: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PayloadFilter:
    """Only the points of articles with one of these ids, one of these titles and one
    of these urls (each tuple that is given; None: any)."""

    article_ids: tuple[str, ...] | None = None
    titles: tuple[str, ...] | None = None
    urls: tuple[str, ...] | None = None

    def conditions(self) -> list[tuple[str, tuple[str, ...]]]:
        """(payload field, accepted values) for each part that is given."""
        parts = (("id", self.article_ids), ("title", self.titles), ("url", self.urls))
        return [(key, values) for key, values in parts if values is not None]


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a collection name means in the store right now."""

    name: str
    collection: str | None  # the physical collection it leads to; None: nothing by that name
    is_alias: bool


def chunk_ref(payload: dict[str, Any]) -> ChunkRef | None:
    """A stored point's (article id, chunk index, article hash); None without an article
    id. A missing index reads -1 and a missing hash "" (so that it never looks whole)."""
    if payload.get("id") is None:
        return None
    index = payload.get("chunk_index")
    return (str(payload["id"]), index if isinstance(index, int) else -1, str(payload.get("article_hash") or ""))


def capped(ranking: Sequence[Any], article_of: Any, group_size: int, limit: int) -> list:
    """The first `limit` of `ranking` with at most `group_size` per article (`article_of(point)`)."""
    per_article: dict[Any, int] = {}
    picked = []
    for point in ranking:
        article = article_of(point)
        if per_article.get(article, 0) < group_size:
            per_article[article] = per_article.get(article, 0) + 1
            picked.append(point)
            if len(picked) == limit:
                break
    return picked


@runtime_checkable
class Store(Protocol):
    """One collection in one Qdrant (see the module docstring)."""

    collection: str
    location: str  # where it lives, for messages: a folder, or a URL without credentials

    def at(self, collection: str) -> "Store":
        """The same connection, bound to `collection`."""
        ...

    # -- names: aliases over physical collections
    def resolve(self, name: str) -> Resolved: ...

    def point_alias(self, alias: str, collection: str, *, replace_alias: bool) -> None:
        """Make `alias` lead to `collection`, in one atomic change."""
        ...

    def aliases_of(self, collection: str) -> list[str]: ...

    def delete_alias(self, alias: str) -> None: ...

    def server_version(self) -> str | None:
        """The Qdrant server's version; None for an engine in this process."""
        ...

    # -- the collection
    def exists(self) -> bool: ...

    def read_spec(self) -> CollectionSpec | None:
        """The spec recorded by the run that created the collection, None if absent."""
        ...

    def ensure_collection(self, spec: CollectionSpec, *, bulk_load: bool = False) -> bool:
        """Create the collection for `spec` (True), or check that it was built so (False)."""
        ...

    def finish_bulk_load(self, *, wait_seconds: float = 0.0) -> bool:
        """Build what a bulk load deferred (nothing, when nothing was), waiting up to
        `wait_seconds` for it; True once the collection is fully indexed."""
        ...

    def drop(self) -> None: ...

    def count(self) -> int: ...

    def count_excluding(self, article_ids: Sequence[str]) -> int:
        """Points of every article but these."""
        ...

    # -- points
    def upsert_pairs(self, pairs: Sequence[tuple[Article, Chunk]], vectors: np.ndarray) -> None:
        """Write chunks and their vectors; returns once the store has them."""
        ...

    def flush(self) -> None:
        """Make what was acknowledged survive a power cut, not only a killed process:
        called before the manifest records it."""
        ...

    def delete_chunks(self, selections: Sequence[ChunkSelection]) -> int:
        """Delete the selected chunks; returns how many points there were."""
        ...

    def delete_articles(self, article_ids: Sequence[str]) -> int: ...

    def scan_chunks(self, batch: int = 2048) -> Iterator[list[ChunkRef]]:
        """Every point as (article id, chunk index, article hash), a page at a time."""
        ...

    def stored_vectors(self, point_ids: Sequence[str]) -> dict[str, tuple[str, np.ndarray]]:
        """The chunk hash and vector of those of `point_ids` that exist."""
        ...

    def payloads(self, point_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def export_points(self, batch: int = 512) -> Iterator[list[StoredPoint]]:
        """Every point with its dense vector and payload, a page at a time."""
        ...

    def import_points(self, points: Sequence[StoredPoint], texts: Sequence[str]) -> None:
        """Write points as exported; with sparse vectors, each one's is made from `texts`."""
        ...

    def any_point(self) -> dict[str, Any] | None: ...

    def search(self, vector: np.ndarray, *, limit: int, sparse: SparseQuery | None = None,
               where: PayloadFilter | None = None, score_threshold: float | None = None,
               group_size: int | None = None) -> list[StoredHit]:
        """The `limit` nearest points to the dense `vector`; with `sparse`, the dense and
        lexical rankings fused by reciprocal rank (`RRF_K`). `score_threshold` is on
        cosine similarity; `group_size` caps hits per article."""
        ...

    def warm(self) -> None:
        """Build what the first query would otherwise wait for."""
        ...

    def close(self) -> None: ...
