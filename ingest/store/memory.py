"""`MemoryStore`: the whole `Store` in plain Python, in this process, for tests.

A public test backend, as httpx's `MockTransport` is: the pipeline, the incremental
algorithm and search's plumbing run against it in milliseconds, with no engine, no
folder and no server, and a test reads like a user's code. It keeps what the other
backends keep and answers as they do:

- collections with their build records (`CollectionSpec`, checked as every backend
  checks them: `ingest.store.specs`) and aliases over them, shared by every store
  `at()` gives;
- points with their payloads, dense vectors (unit length, as Qdrant stores a cosine
  collection's) and, when the spec says so, BM25 vectors made by `ingest.lexical`;
- exact cosine search, and hybrid search as Qdrant fuses it: each ranking
  `max(4 * limit, FUSION_DEPTH)` deep, the lexical one scored with Qdrant's IDF
  modifier, then weighted reciprocal rank fusion (`RRF_K`, `RRF_WEIGHTS`, Qdrant's
  `1 / ((position + 1) / weight + k - 1)` over zero-based positions); filters,
  `score_threshold` (on the dense side) and `group_size` as the embedded store has them.

Ties are broken by point id, where Qdrant leaves them in no set order. Nothing is
written anywhere: `flush()` and `close()` have nothing to do.

    >>> from ingest.embedders.fake import FakeEmbedder
    >>> from schemas import CollectionSpec
    >>> store, embedder = MemoryStore(collection="wiki"), FakeEmbedder()
    >>> store.ensure_collection(CollectionSpec(model=embedder.spec, chunking={}))
    True
    >>> store.count(), store.resolve("wiki").collection
    (0, 'wiki')
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ingest.errors import StoreError
from ingest.lexical import SparseQuery, passage_text, passage_vector
from ingest.store.base import (
    FUSION_DEPTH,
    RRF_K,
    RRF_WEIGHTS,
    ChunkRef,
    ChunkSelection,
    Fused,
    Pair,
    PayloadFilter,
    Resolved,
    StoredHit,
    StoredPoint,
    StoredVector,
    capped_ranking,
    chunk_ref,
    definition_depth,
    with_definitions,
)
from ingest.store.points import definitions_of, point_payloads
from ingest.store.specs import check_compatible
from schemas import CollectionSpec


@dataclass(frozen=True, slots=True)
class _Point:
    vector: np.ndarray  # unit length
    payload: dict[str, Any]
    lexical: dict[int, float] | None  # term id -> BM25 term-frequency weight
    definition: np.ndarray | None = None  # unit length; an article's first chunk, in a collection with definitions


@dataclass(slots=True)
class _Collection:
    spec: CollectionSpec
    points: dict[str, _Point] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Ranked:
    id: str
    score: float
    point: _Point


class _Space:
    """What one "server" holds: shared by every store `at()` made from the first."""

    def __init__(self) -> None:
        self.collections: dict[str, _Collection] = {}
        self.aliases: dict[str, str] = {}
        self.lock = threading.RLock()  # the pipeline reads and writes from two threads


class MemoryStore:
    """One collection of an in-memory Qdrant stand-in (see the module docstring)."""

    def __init__(self, collection: str = "wikipedia", *, location: str = ":memory:") -> None:
        self.collection, self.location = collection, location
        self._space = _Space()

    def at(self, collection: str) -> MemoryStore:
        other = copy.copy(self)  # shares the space
        other.collection = collection
        return other

    def __repr__(self) -> str:
        return f"MemoryStore(collection={self.collection!r})"

    @property
    def _here(self) -> _Collection:
        found = self._space.collections.get(self.collection)
        if found is None:
            raise StoreError(f"collection {self.collection!r} does not exist in {self.location}")
        return found

    # -- names -------------------------------------------------------------
    def resolve(self, name: str) -> Resolved:
        with self._space.lock:
            if (target := self._space.aliases.get(name)) is not None:
                return Resolved(name, target, True)
            return Resolved(name, name if name in self._space.collections else None, False)

    def point_alias(self, alias: str, collection: str, *, replace_alias: bool) -> None:
        with self._space.lock:
            if alias in self._space.aliases and not replace_alias:
                raise StoreError(f"alias {alias!r} already exists")
            if alias in self._space.collections:
                raise StoreError(f"{alias!r} is a collection: an alias cannot take its name")
            self._space.aliases[alias] = collection

    def aliases_of(self, collection: str) -> list[str]:
        with self._space.lock:
            return sorted(alias for alias, target in self._space.aliases.items() if target == collection)

    def delete_alias(self, alias: str) -> None:
        with self._space.lock:
            self._space.aliases.pop(alias, None)

    def server_version(self) -> str | None:
        return None  # in this process

    # -- collection --------------------------------------------------------
    def exists(self) -> bool:
        return self.collection in self._space.collections

    def read_spec(self) -> CollectionSpec | None:
        found = self._space.collections.get(self.collection)
        return found.spec if found is not None else None

    def ensure_collection(self, spec: CollectionSpec, *, bulk_load: bool = False) -> bool:
        with self._space.lock:
            existing = self._space.collections.get(self.collection)
            if existing is not None:
                check_compatible(self.collection, existing.spec, spec)
                return False
            self._space.collections[self.collection] = _Collection(spec)
            return True

    def finish_bulk_load(self, *, wait_seconds: float = 0.0) -> bool:
        self._here  # noqa: B018 - a missing collection fails here, as on the other backends
        return True

    def drop(self) -> None:
        with self._space.lock:
            self._space.collections.pop(self.collection, None)

    def count(self) -> int:
        return len(self._here.points)

    def count_excluding(self, article_ids: Sequence[str]) -> int:
        excluded = set(article_ids)
        with self._space.lock:
            return sum(1 for p in self._here.points.values() if p.payload.get("id") not in excluded)

    def close(self) -> None:
        pass  # nothing held: the points stay, for the test to read

    def warm(self) -> None:
        pass

    # -- points ------------------------------------------------------------
    def upsert_pairs(
        self, pairs: Sequence[Pair], vectors: np.ndarray, definitions: Mapping[int, np.ndarray] | None = None
    ) -> None:
        ids, payloads = point_payloads(pairs)
        sparse = self._here.spec.sparse
        texts = [passage_text(chunk.embed_text, chunk.text, sparse) for _, chunk in pairs]
        self._write(ids, vectors, payloads, texts, definitions or {})

    def import_points(self, points: Sequence[StoredPoint], texts: Sequence[str]) -> None:
        ids, vectors, payloads = [p.id for p in points], [p.vector for p in points], [p.payload for p in points]
        self._write(ids, vectors, payloads, texts, definitions_of(points))

    def _write(
        self,
        ids: Sequence[str],
        vectors: Any,
        payloads: Sequence[dict[str, Any]],
        texts: Sequence[str],
        definitions: Mapping[int, np.ndarray],
    ) -> None:
        with self._space.lock:
            here = self._here
            sparse, dimension = here.spec.sparse, here.spec.dimension
            keep_definitions = here.spec.definition is not None
            for i, (pid, vector, payload, text) in enumerate(zip(ids, vectors, payloads, texts, strict=True)):
                dense = np.asarray(vector, dtype=np.float32)
                if dense.shape != (dimension,):
                    raise StoreError(
                        f"point {pid}: a vector of shape {dense.shape} for a collection of "
                        f"{dimension} dimensions ({self.collection!r})"
                    )
                lexical = dict(zip(*passage_vector(text, sparse))) if sparse is not None else None
                definition = definitions.get(i) if keep_definitions else None
                here.points[str(pid)] = _Point(
                    _unit(dense), dict(payload), lexical, None if definition is None else _unit(definition)
                )

    def flush(self) -> None:
        pass  # nothing to make durable

    def delete_chunks(self, selections: Sequence[ChunkSelection]) -> int:
        return self._delete_where(lambda payload: any(_selected(payload, s) for s in selections))

    def delete_articles(self, article_ids: Sequence[str]) -> int:
        ids = set(article_ids)
        return self._delete_where(lambda payload: payload.get("id") in ids)

    def _delete_where(self, selected: Any) -> int:
        with self._space.lock:
            points = self._here.points
            gone = [pid for pid, point in points.items() if selected(point.payload)]
            for pid in gone:
                del points[pid]
            return len(gone)

    def _sorted(self) -> list[tuple[str, _Point]]:
        """The points in id order, as Qdrant scrolls them."""
        with self._space.lock:
            return sorted(self._here.points.items())

    def scan_chunks(self, batch: int = 2048) -> Iterator[list[ChunkRef]]:
        for page in _pages(self._sorted(), batch):
            yield [ref for _, point in page if (ref := chunk_ref(point.payload)) is not None]

    def stored_vectors(self, point_ids: Sequence[str]) -> dict[str, StoredVector]:
        with self._space.lock:
            points = self._here.points
            return {
                pid: StoredVector(chunk_hash, points[pid].vector.copy(), _copy(points[pid].definition))
                for pid in point_ids
                if pid in points and (chunk_hash := points[pid].payload.get("chunk_hash"))
            }

    def payloads(self, point_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self._space.lock:
            points = self._here.points
            return {pid: dict(points[pid].payload) for pid in point_ids if pid in points}

    def export_points(self, batch: int = 512) -> Iterator[list[StoredPoint]]:
        for page in _pages(self._sorted(), batch):
            yield [
                StoredPoint(pid, point.vector.copy(), dict(point.payload), _copy(point.definition))
                for pid, point in page
            ]

    def any_point(self) -> dict[str, Any] | None:
        points = self._sorted()
        return dict(points[0][1].payload) if points else None

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
        dense = np.asarray(vector, dtype=np.float32)
        unit = dense / (float(np.linalg.norm(dense)) or 1.0)
        with self._space.lock:
            everything = list(self._here.points.items())
        points = [(pid, p) for pid, p in everything if _where(p.payload, where)]
        by_cosine = _ranked((pid, float(unit @ p.vector), p) for pid, p in points)
        if score_threshold is not None:
            by_cosine = [r for r in by_cosine if r.score >= score_threshold]
        by_terms = _lexical(points, sparse, everything) if sparse is not None and sparse.indices else None
        definitions = self._here.spec.definition is not None and sparse is not None
        by_definition = (
            _ranked((pid, float(unit @ p.definition), p) for pid, p in points if p.definition is not None)
            if definitions
            else []
        )
        if score_threshold is not None:
            by_definition = [r for r in by_definition if r.score >= score_threshold]

        def ranking(depth: int) -> list[_Ranked]:
            if sparse is None:
                return by_cosine[:depth]
            branch = max(4 * depth, FUSION_DEPTH)
            rankings = [by_cosine[:branch]] + ([by_terms[:branch]] if by_terms is not None else [])
            fused = _fused(rankings, RRF_WEIGHTS[: len(rankings)])
            if not definitions:
                return fused[:depth]
            wide = definition_depth(depth)
            merged = with_definitions(
                [Fused(r.id, r.score, r.point.payload, r.point) for r in fused[:wide]],
                [Fused(r.id, r.score, r.point.payload, r.point) for r in by_definition[:wide]],
                lambda f: f.payload.get("id"),
                limit=depth,
            )
            return [_Ranked(f.id, f.score, f.vector) for f in merged]

        picked = capped_ranking(
            ranking, limit=limit, group_size=group_size, article_of=lambda ranked: ranked.point.payload.get("id")
        )
        return [StoredHit(r.id, r.score, dict(r.point.payload), float(unit @ r.point.vector)) for r in picked]


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / (float(np.linalg.norm(vector)) or 1.0)


def _copy(vector: np.ndarray | None) -> np.ndarray | None:
    return None if vector is None else vector.copy()


def _pages(items: list, size: int) -> Iterator[list]:
    """Pages of `size`; an empty collection still gives one (empty) page, as a scroll does."""
    yield items[:size]
    for start in range(size, len(items), size):
        yield items[start : start + size]


def _ranked(scored: Any) -> list[_Ranked]:
    return sorted((_Ranked(pid, score, point) for pid, score, point in scored), key=lambda r: (-r.score, r.id))


def _where(payload: dict[str, Any], where: PayloadFilter | None) -> bool:
    return where is None or all(payload.get(key) in values for key, values in where.conditions())


def _selected(payload: dict[str, Any], selection: ChunkSelection) -> bool:
    """As the backends' filter: the article, and (when either is given) a chunk from
    `from_index` on or one of `indices`."""
    if payload.get("id") != selection.article_id:
        return False
    if selection.from_index is None and not selection.indices:
        return True
    index = payload.get("chunk_index")
    after = selection.from_index is not None and isinstance(index, int) and index >= selection.from_index
    return after or index in selection.indices


def _lexical(
    points: list[tuple[str, _Point]], query: SparseQuery, collection: list[tuple[str, _Point]]
) -> list[_Ranked]:
    """The points sharing a term with `query`, by BM25: each term's weight in the point
    times the query's, times the term's IDF over the whole collection, as Qdrant's
    `Modifier.IDF` computes it: ln((N - n + 0.5) / (n + 0.5) + 1)."""
    lexical = [p.lexical for _, p in collection if p.lexical is not None]
    idf = {}
    for term in query.indices:
        n = sum(1 for terms in lexical if term in terms)
        idf[term] = math.log((len(lexical) - n + 0.5) / (n + 0.5) + 1.0)
    weights = dict(zip(query.indices, query.values))
    scored = []
    for pid, point in points:
        shared = [t for t in weights if point.lexical and t in point.lexical]
        if shared:
            scored.append((pid, sum(weights[t] * idf[t] * point.lexical[t] for t in shared), point))
    return _ranked(scored)


def _fused(rankings: list[list[_Ranked]], weights: Sequence[float]) -> list[_Ranked]:
    """Weighted reciprocal rank fusion, as Qdrant computes it."""
    scores: dict[str, float] = {}
    points: dict[str, _Point] = {}
    for ranking, weight in zip(rankings, weights):
        for position, ranked in enumerate(ranking):
            scores[ranked.id] = scores.get(ranked.id, 0.0) + 1.0 / ((position + 1) / weight + RRF_K - 1)
            points[ranked.id] = ranked.point
    return _ranked((pid, score, points[pid]) for pid, score in scores.items())
