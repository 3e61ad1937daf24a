"""The store boundary: small interfaces, one per kind of caller, whatever holds the vectors.

- `PointWriter`: what the pipeline (`ingest.pipeline`) needs: write chunks, reuse the
  vectors of unchanged ones, delete stale chunks, make writes durable;
- `PointReader`: scans, counts, payloads, exports and search (the state checks, search);
- `Catalogue`: collections, aliases and build records (`CollectionSpec`);
- `Store`: all three, plus the whole-article deletes and the copy between stores; each
  backend implements it.

A `Store` is a connection to one Qdrant (a server or cluster, or an engine embedded
in this process) bound to one collection; `at(name)` gives the same connection bound
to another. Everything that crosses the boundary is plain data defined here
(`ChunkRef`, `StoredVector`, `StoredHit`, `ChunkSelection`, `PayloadFilter`,
`Resolved`) or in `ingest.lexical` (`SparseQuery`), never a backend's own types, so
that a backend is one module: `ingest.store.server` (qdrant-client against a server),
`ingest.store.edge` (the embedded default) and `ingest.store.memory` (a test backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ingest.lexical import SparseQuery
from schemas import Article, Chunk, CollectionSpec, SparseSpec

# Payload fields that search filters on (one article's chunks, by title or url).
FILTER_FIELDS = ("id", "title", "url")
FUSION_DEPTH = 50  # at least this many candidates from each ranking of a hybrid search
# Reciprocal rank fusion's constant, explicit so that rankings agree across backends (docs/measurements.md, "Fusion").
RRF_K = 2
# Dense then lexical; a shade more lexical weight settles k = 2's exact ties (docs/measurements.md, "Fusion").
RRF_WEIGHTS = (1.0, 1.05)
# The third ranking, over the definition vectors (`ingest.definitions`), where a collection has them:
# chosen on the tuning sets (docs/measurements.md, "Definitions").
DEFINITION_WEIGHT = 0.7
# How deep a search with definitions reads the hybrid ranking and the definitions' for few hits: deeper
# changed no set's figures, and every point read costs a payload read and a rescore (docs/measurements.md).
DEFINITION_DEPTH = 20
# A quantized collection (a server's by default, the embedded store's once it has a graph) keeps
# int8 vectors clipped at this quantile of the values (Qdrant's recommended setting), and every
# dense search rescores with the originals the best OVERSAMPLING times as many candidates as it returns.
INT8_QUANTILE = 0.99
OVERSAMPLING = 2.0

Pair = tuple[Article, Chunk]  # a chunk with the article it was cut from: what the pipeline writes


@dataclass(frozen=True, slots=True, order=True)
class ChunkRef:
    """Where a stored point belongs, read from its payload: enough to check the manifest
    against the collection (`ingest.state.reconcile`) without fetching vectors."""

    article_id: str
    chunk_index: int  # -1 when the payload lacks it
    article_hash: str  # "" when the payload lacks it (so that it never looks whole)


@dataclass(frozen=True, slots=True)
class StoredVector:
    """A stored point's chunk hash and dense vector: a chunk whose hash is unchanged
    keeps this vector instead of being embedded again."""

    chunk_hash: str
    vector: np.ndarray
    definition: np.ndarray | None = None  # an article's first chunk's definition vector, where stored


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
    definition: np.ndarray | None = None  # the definition vector of an article's first chunk, where stored


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


@dataclass(frozen=True, slots=True)
class Fused:
    """A point of a hybrid ranking, as the backends' scored points read (id, score, payload, vector)."""

    id: Any
    score: float
    payload: dict[str, Any]
    vector: Any


UNREAD: Any = object()  # a store's build record, not read yet (`RecordedStore`)


class RecordedStore:
    """What a store answers from its collection's build record (`CollectionSpec`), which
    writes and searches consult on every call: read once, by the store's `read_spec`. The
    store sets `_recorded` when it writes or adopts a record, and back to UNREAD when it
    turns to another collection."""

    _recorded: Any = UNREAD

    @property
    def sparse(self) -> SparseSpec | None:
        """How the collection's lexical vectors are made; None if it has none."""
        spec = self._record()
        return spec.sparse if spec else None

    @property
    def definitions(self) -> bool:
        """Whether the collection keeps a definition vector on each article's first chunk."""
        spec = self._record()
        return spec is not None and spec.definition is not None

    def _record(self) -> CollectionSpec | None:
        if self._recorded is UNREAD:
            self._recorded = self.read_spec()  # type: ignore[attr-defined]  # each store's own
        return self._recorded


def definition_depth(limit: int) -> int:
    """How many points of the hybrid ranking, and of the definitions' ranking, a search with
    definitions fuses for `limit` hits: a definition past DEFINITION_DEPTH adds under 0.033."""
    return max(limit, DEFINITION_DEPTH)


def with_definitions(
    fused: Sequence[Any],
    defined: Sequence[Any],
    article_of: Callable[[Any], Any],
    *,
    limit: int | None = None,
    weight: float = DEFINITION_WEIGHT,
    k: int = RRF_K,
) -> list[Fused]:
    """Fuse the definition ranking into a hybrid one, by article.

    `fused`: points ranked by the dense and lexical rankings' reciprocal rank fusion (their
    `score`); `defined`: first chunks ranked by their definition vector. Each article of
    `defined` at position p adds the reciprocal-rank term Qdrant's weighted RRF would give it,
    1 / ((p + 1) / weight + k - 1), to its best point in `fused` (whichever
    chunk that is: the definition speaks for the article, and the passage that answers a
    question may lie deeper in it than the first chunk); an article not in `fused` enters with
    its first chunk and that term alone. Re-ranked by the sums (the first `limit`); ties keep
    `fused` order."""
    scores = [float(p.score) for p in fused]
    best: dict[Any, int] = {}
    for i, point in enumerate(fused):
        best.setdefault(article_of(point), i)
    points = list(fused)
    for position, point in enumerate(defined):
        term = 1.0 / ((position + 1) / weight + k - 1)
        article = article_of(point)
        if article in best:
            scores[best[article]] += term
        else:
            best[article] = len(points)
            points.append(point)
            scores.append(term)
    order = sorted(range(len(points)), key=lambda i: (-scores[i], i))[:limit]
    return [Fused(points[i].id, scores[i], points[i].payload, points[i].vector) for i in order]


def chunk_ref(payload: dict[str, Any]) -> ChunkRef | None:
    """A stored point's `ChunkRef`; None without an article id."""
    if payload.get("id") is None:
        return None
    index = payload.get("chunk_index")
    return ChunkRef(str(payload["id"]), index if isinstance(index, int) else -1, str(payload.get("article_hash") or ""))


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


def capped_ranking(
    query: Callable[[int], list], *, limit: int, group_size: int | None, article_of: Callable[[Any], Any]
) -> list:
    """The first `limit` points of the ranking `query(depth)` gives, at most `group_size`
    per article: fetched deep enough for the cap, and four times deeper while it falls short."""
    depth = limit if group_size is None else max(4 * limit, FUSION_DEPTH)
    while True:
        points = query(depth)
        picked = points[:limit] if group_size is None else capped(points, article_of, group_size, limit)
        if group_size is None or len(picked) >= limit or len(points) < depth:
            return picked
        depth *= 4


@runtime_checkable
class PointWriter(Protocol):
    """What the pipeline needs of a store, and no more: write chunks, find the
    vectors it may reuse, delete stale chunks, and make it all durable before the
    manifest says so (`ingest.pipeline`)."""

    def upsert_pairs(
        self, pairs: Sequence[Pair], vectors: np.ndarray, definitions: Mapping[int, np.ndarray] | None = None
    ) -> None:
        """Write chunks and their vectors, and the definition vectors of first chunks
        (position in `pairs` -> vector); returns once the store has them."""
        ...

    def stored_vectors(self, point_ids: Sequence[str]) -> dict[str, StoredVector]:
        """The chunk hash and vectors of those of `point_ids` that exist."""
        ...

    def delete_chunks(self, selections: Sequence[ChunkSelection]) -> int:
        """Delete the selected chunks; returns how many points there were."""
        ...

    def flush(self) -> None:
        """Make what was acknowledged survive a power cut, not only a killed process:
        called before the manifest records it."""
        ...


@runtime_checkable
class PointReader(Protocol):
    """Reading one collection's points: the state checks (`ingest.state.reconcile`),
    copies between stores and search."""

    collection: str

    def count(self) -> int: ...

    def count_excluding(self, article_ids: Sequence[str]) -> int:
        """Points of every article but these."""
        ...

    def scan_chunks(self, batch: int = 2048) -> Iterator[list[ChunkRef]]:
        """Every point's `ChunkRef`, a page at a time."""
        ...

    def payloads(self, point_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads (`PointPayload`'s fields) of those of `point_ids` that exist."""
        ...

    def export_points(self, batch: int = 512) -> Iterator[list[StoredPoint]]:
        """Every point with its dense vector and payload, a page at a time."""
        ...

    def any_point(self) -> dict[str, Any] | None: ...

    def search(
        self,
        vector: np.ndarray,
        *,
        limit: int,
        sparse: SparseQuery | None = None,
        where: PayloadFilter | None = None,
        score_threshold: float | None = None,
        group_size: int | None = None,
    ) -> list[StoredHit]:
        """The `limit` nearest points to the dense `vector`; with `sparse`, the dense and
        lexical rankings fused by reciprocal rank (`RRF_K`, `RRF_WEIGHTS`). `score_threshold`
        is on cosine similarity; `group_size` caps hits per article."""
        ...

    def warm(self) -> None:
        """Build what the first query would otherwise wait for."""
        ...


@runtime_checkable
class Catalogue(Protocol):
    """The names in one Qdrant: collections, the aliases over them and each one's build
    record (`CollectionSpec`): what plans, switches and checks a rebuild (`ingest.state.rebuild`)."""

    collection: str
    location: str  # where it lives, for messages: a folder, or a URL without credentials

    def at(self, collection: str) -> Store:
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

    # -- the collection this connection is bound to
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

    def close(self) -> None: ...


@runtime_checkable
class Store(Catalogue, PointReader, PointWriter, Protocol):
    """One collection in one Qdrant, all of it (see the module docstring): what a
    backend implements, and what a job that opens a store holds. Callers take the
    narrowest of the interfaces above that does; these two are a reindex's deletes
    (`ingest.state.reconcile.delete_unseen`) and a copy's writes (`ingest.transfer`)."""

    def delete_articles(self, article_ids: Sequence[str]) -> int:
        """Delete every point of these articles; returns how many there were."""
        ...

    def import_points(self, points: Sequence[StoredPoint], texts: Sequence[str]) -> None:
        """Write points as exported; with sparse vectors, each one's is made from `texts`."""
        ...
