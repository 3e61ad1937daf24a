"""The embedded default `Store`: qdrant-client's local mode, in this process.

Local mode speaks the server's API (`ServerStore`) but is plain Python without
locks: a folder holds one process, calls are serialised per client here, and it
has no HNSW graph or payload index to defer. It also scores a sparse query, a
filter and a grouped query by looping over every point in Python (about 0.4 s a
query at 10,000 chunks), so this module keeps what a server keeps itself: a numpy
inverted index over the BM25 vectors and the filterable payload fields, built
once from the collection and dropped on every write.

The index scores exactly as Qdrant does (dot product of the query, IDF-weighted
with Qdrant's formula over the points that have the vector, and the stored
weights); `tests/test_sparse_index.py` checks its rankings against Qdrant's own.
The fusion is qdrant-client's own RRF, and the cap per article is applied to a
ranking fetched deep enough (deeper, if it falls short).

    >>> store = LocalStore.open("qdrant_data", collection="wikipedia")   # or ":memory:"
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.hybrid.fusion import reciprocal_rank_fusion

from ingest.errors import StoreError, StoreLockedError
from ingest.lexical import SPARSE_VECTOR
from ingest.store.base import (
    FILTER_FIELDS,
    FUSION_DEPTH,
    RRF_K,
    PayloadFilter,
    SparseQuery,
    StoredHit,
    capped,
)
from ingest.store.points import dense_vector, hits_from, payload_filter
from ingest.store.server import ServerStore


@dataclass(frozen=True, slots=True)
class SparseIndex:
    ids: list[str]  # point ids by row
    postings: dict[int, tuple[np.ndarray, np.ndarray]]  # term -> (rows, weights)
    fields: dict[str, list[Any]]  # the filterable payload fields, by row
    rows: dict[str, int]  # row by point id

    @classmethod
    def build(cls, client: QdrantClient, collection: str, page: int = 4096) -> "SparseIndex":
        ids: list[str] = []
        fields: dict[str, list[Any]] = {key: [] for key in FILTER_FIELDS}
        rows: dict[int, list[int]] = {}
        weights: dict[int, list[float]] = {}
        offset = None
        while True:
            points, offset = client.scroll(collection, limit=page, offset=offset, with_payload=FILTER_FIELDS,
                                           with_vectors=[SPARSE_VECTOR])
            for point in points:
                vector = (point.vector or {}).get(SPARSE_VECTOR) if isinstance(point.vector, dict) else None
                if vector is None:
                    continue  # not part of the sparse corpus (IDF counts points that have the vector)
                row = len(ids)
                ids.append(str(point.id))
                for key in FILTER_FIELDS:
                    fields[key].append((point.payload or {}).get(key))
                for term, weight in zip(vector.indices, vector.values):
                    rows.setdefault(term, []).append(row)
                    weights.setdefault(term, []).append(weight)
            if offset is None:
                break
        postings = {term: (np.asarray(r, dtype=np.int32), np.asarray(weights[term], dtype=np.float64))
                    for term, r in rows.items()}
        return cls(ids, postings, fields, {pid: row for row, pid in enumerate(ids)})

    def allowed(self, where: PayloadFilter) -> set[str]:
        """The ids of the points `where` keeps."""
        rows: set[int] | None = None
        for key, values in where.conditions():
            wanted = set(values)
            keep = {row for row, value in enumerate(self.fields[key]) if value in wanted}
            rows = keep if rows is None else rows & keep
        return {self.ids[row] for row in rows} if rows is not None else set(self.ids)

    def top(self, indices: Sequence[int], values: Sequence[float], limit: int,
            allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """The `limit` best (point id, score) for a query, among the `allowed` points
        if given; points sharing no term are not hits. IDF is over the whole collection,
        filter or not, as in Qdrant."""
        n = len(self.ids)
        scores = np.zeros(n, dtype=np.float64)
        matched = np.zeros(n, dtype=bool)
        for term, value in zip(indices, values):
            found = self.postings.get(term)
            if found is None:
                continue
            rows, weights = found
            idf = math.log((n - len(rows) + 0.5) / (len(rows) + 0.5) + 1)
            scores[rows] += value * idf * weights
            matched[rows] = True
        if allowed is not None:
            permitted = np.zeros(n, dtype=bool)
            permitted[[self.rows[pid] for pid in allowed if pid in self.rows]] = True
            matched &= permitted
        candidates = np.flatnonzero(matched)
        if len(candidates) > limit:
            candidates = candidates[np.argpartition(-scores[candidates], limit - 1)[:limit]]
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in order]


# One index per (client, collection), dropped when anything is written through a
# `LocalStore` (local mode allows one process per folder, so nothing else writes).
_INDEXES: "weakref.WeakKeyDictionary[QdrantClient, dict[str, tuple[int, SparseIndex | None]]]" = (
    weakref.WeakKeyDictionary())
_GUARD = threading.Lock()


def index_for(client: QdrantClient, collection: str) -> SparseIndex:
    with _GUARD:
        generation, index = _INDEXES.setdefault(client, {}).get(collection, (0, None))
    if index is None:
        index = SparseIndex.build(client, collection)
        with _GUARD:  # keep it unless a write came while it was being built
            if _INDEXES[client].get(collection, (0, None))[0] == generation:
                _INDEXES[client][collection] = (generation, index)
    return index


def forget(client: QdrantClient, collection: str) -> None:
    """The collection changed: the next search builds its index again."""
    with _GUARD:
        indexes = _INDEXES.setdefault(client, {})
        generation, _ = indexes.get(collection, (0, None))
        indexes[collection] = (generation + 1, None)


# Local mode is plain Python without locks, and the pipeline reads stored vectors on one
# thread while it writes on another (and a searcher may share the client): one call at a
# time per client.
_LOCKS: "weakref.WeakKeyDictionary[QdrantClient, threading.RLock]" = weakref.WeakKeyDictionary()


def _lock_for(client: QdrantClient) -> threading.RLock:
    with _GUARD:
        return _LOCKS.setdefault(client, threading.RLock())


class LocalStore(ServerStore):
    """One collection in qdrant-client's local mode (see the module docstring)."""

    _server_indexes = False  # no HNSW graph to defer, no payload index (it filters by scanning)
    _rescore = None  # exact search: no quantization to rescore

    def __init__(self, client: QdrantClient, collection: str, **kwargs: Any) -> None:
        super().__init__(client, collection, **kwargs)
        self._guard = _lock_for(client)

    @classmethod
    def open(cls, path: str | Path, *, collection: str) -> "LocalStore":
        """The store in folder `path` (":memory:" for a throw-away one)."""
        location = str(path)
        try:
            if location == ":memory:":
                return cls(QdrantClient(location=":memory:"), collection, location=location)
            Path(location).mkdir(parents=True, exist_ok=True)
            return cls(QdrantClient(path=location), collection, location=location)
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                _close_leaked_lock_file(exc)
                raise StoreLockedError(
                    f"the Qdrant storage folder {location} is in use by another process "
                    "(local mode allows one process per folder): wait for it to finish, pass "
                    "another --qdrant-path, or run a Qdrant server and use --qdrant-url"
                ) from exc
            raise StoreError(f"cannot open Qdrant storage at {location}: {exc}") from exc

    def server_version(self) -> str | None:
        return None  # qdrant-client's local mode: no server

    def finish_bulk_load(self, *, wait_seconds: float = 0.0) -> bool:
        return True  # no graph was deferred: always searchable as it is

    def _changed(self) -> None:
        forget(self.client, self.collection)

    def warm(self) -> None:
        """Build the sparse index now, not on the first hybrid query (about a second at 10,000 chunks)."""
        if self.sparse is not None:
            index_for(self.client, self.collection)

    def search(self, vector: np.ndarray, *, limit: int, sparse: SparseQuery | None = None,
               where: PayloadFilter | None = None, score_threshold: float | None = None,
               group_size: int | None = None) -> list[StoredHit]:
        filtered = where is not None and bool(where.conditions())
        if sparse is None and group_size is None and not (filtered and self.sparse is not None):
            return super().search(vector, limit=limit, where=where, score_threshold=score_threshold)
        dense = np.asarray(vector, dtype=np.float32)
        with self._guard:
            points = self._search_locally(dense, sparse, limit, where if filtered else None, score_threshold,
                                          group_size)
        return hits_from(points, dense, fused=sparse is not None)

    def _search_locally(self, dense: np.ndarray, sparse: SparseQuery | None, limit: int,
                        where: PayloadFilter | None, score_threshold: float | None,
                        group_size: int | None) -> list[models.ScoredPoint]:
        """A hybrid, filtered or grouped query answered as a server would answer it."""
        index = index_for(self.client, self.collection) if self.sparse is not None else None
        allowed = index.allowed(where) if index is not None and where is not None else None
        query_filter = payload_filter(where) if index is None else None  # a dense-only collection
        depth = max(4 * limit, FUSION_DEPTH)
        while True:
            if allowed is not None:
                ranking = self._dense_among(allowed, dense, depth, score_threshold)
            else:
                ranking = self.client.query_points(self.collection, query=dense.tolist(), limit=depth,
                                                   query_filter=query_filter,
                                                   score_threshold=score_threshold).points
            exhausted = len(ranking) < depth
            if sparse is not None:
                rankings = [ranking]
                if sparse[0]:
                    found = index.top(sparse[0], sparse[1], depth, allowed=allowed)
                    exhausted = exhausted and len(found) < depth
                    rankings.append([models.ScoredPoint(id=pid, version=0, score=score) for pid, score in found])
                ranking = reciprocal_rank_fusion(rankings, limit=2 * depth, ranking_constant_k=RRF_K)
            if group_size is None:
                picked = ranking[:limit]
            else:
                points = self.client.retrieve(self.collection, ids=[p.id for p in ranking], with_payload=["id"],
                                              with_vectors=False)
                articles = {str(p.id): (p.payload or {}).get("id") for p in points}
                picked = capped(ranking, lambda point: articles.get(str(point.id)), group_size, limit)
            if len(picked) >= limit or exhausted:
                break
            depth *= 4
        records = {str(r.id): r for r in self.client.retrieve(self.collection, ids=[p.id for p in picked],
                                                               with_payload=True, with_vectors=True)}
        return [models.ScoredPoint(id=p.id, version=0, score=p.score, payload=records[str(p.id)].payload,
                                   vector=records[str(p.id)].vector) for p in picked if str(p.id) in records]

    def _dense_among(self, allowed: set[str], dense: np.ndarray, limit: int,
                     score_threshold: float | None) -> list[models.ScoredPoint]:
        """The dense ranking of the `allowed` points (a filter's, usually a few articles),
        scored as Qdrant scores cosine: stored vectors are normalised on the way in."""
        if not allowed:
            return []
        records = self.client.retrieve(self.collection, ids=list(allowed), with_payload=False, with_vectors=True)
        vectors = np.asarray([dense_vector(r.vector) for r in records], dtype=np.float32)
        scores = vectors @ (dense / (float(np.linalg.norm(dense)) or 1.0))
        order = np.argsort(-scores, kind="stable")[:limit]
        return [models.ScoredPoint(id=records[i].id, version=0, score=float(scores[i])) for i in order
                if score_threshold is None or scores[i] > score_threshold]


def _close_leaked_lock_file(exc: BaseException) -> None:
    """qdrant-client's local mode leaves its lock file open when the lock is taken
    by another process; close it rather than leak a descriptor per attempt."""
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        handle = getattr(owner, "_flock_file", None)
        if handle is not None and not handle.closed:
            handle.close()
        tb = tb.tb_next
