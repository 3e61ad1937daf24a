"""Qdrant, through `qdrant-client`: embedded local mode by default, a server
(or cluster) when a URL is given. The only module that talks to Qdrant."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from qdrant_client import QdrantClient, models
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ingest import sparse_index
from ingest.crashpoints import crashpoint
from ingest.errors import CollectionMismatchError, StoreError, StoreLockedError
from ingest.lexical import SPARSE_VECTOR, passage_vector
from schemas import Article, Chunk, CollectionSpec, SparseSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredHit:
    id: str
    score: float  # what ranked it: cosine similarity, or the fused score of a hybrid search
    payload: dict[str, Any]
    similarity: float  # cosine similarity to the query


@dataclass(frozen=True, slots=True)
class ChunkSelection:
    """Some chunks of one article: every chunk from `from_index` on, and `indices`."""

    article_id: str
    from_index: int | None = None
    indices: tuple[int, ...] = ()

    def condition(self) -> models.Filter:
        which: list[models.Condition] = []
        if self.from_index is not None:
            which.append(models.FieldCondition(key="chunk_index", range=models.Range(gte=self.from_index)))
        if self.indices:
            which.append(models.FieldCondition(key="chunk_index", match=models.MatchAny(any=list(self.indices))))
        article = models.FieldCondition(key="id", match=models.MatchValue(value=self.article_id))
        return models.Filter(must=[article], should=which or None)


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a collection name means in Qdrant right now."""

    name: str
    collection: str | None  # the physical collection it leads to; None: nothing by that name
    is_alias: bool


def open_client(
    *,
    path: str | Path | None = None,
    url: str | None = None,
    api_key: str | None = None,
    prefer_grpc: bool = True,
    timeout: int = 120,
) -> QdrantClient:
    """A client for a server at `url`, or for embedded local storage at `path`
    (":memory:" for a throw-away store)."""
    if url:
        return QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout)
    location = str(path or "qdrant_data")
    try:
        if location == ":memory:":
            return QdrantClient(location=":memory:")
        Path(location).mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=location)
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            _close_leaked_lock_file(exc)
            raise StoreLockedError(
                f"the Qdrant storage folder {location} is in use by another process "
                "(local mode allows one process per folder): wait for it to finish, pass "
                "another --qdrant-path, or run a Qdrant server and use --qdrant-url"
            ) from exc
        raise StoreError(f"cannot open Qdrant storage at {location}: {exc}") from exc


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


def _is_transient(exc: BaseException) -> bool:
    """Server hiccups worth retrying: timeouts, dropped connections, 5xx, gRPC UNAVAILABLE."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, ResponseHandlingException):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in (429, 500, 502, 503, 504)
    try:
        import grpc
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return False


_retry_transient = retry(
    retry=retry_if_exception(_is_transient),
    wait=wait_exponential_jitter(initial=0.5, max=20),
    stop=stop_after_attempt(8),
    reraise=True,
)


# Bodies well under Qdrant's 32 MB REST limit and quick to retry. Estimated per point:
# its text and title (UTF-8, JSON-escaped), its floats as JSON text, and the other fields.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
_BYTES_PER_FLOAT = 12
_POINT_OVERHEAD_BYTES = 400

# Payload fields that filters use (one article's chunks, by title or url): indexed
# before the load, since building an index over a loaded collection is slower.
PAYLOAD_INDEXES = {"id": models.PayloadSchemaType.KEYWORD,
                   "url": models.PayloadSchemaType.KEYWORD,
                   "title": models.PayloadSchemaType.KEYWORD}
HNSW_M = 16
DENSE_VECTOR = ""  # the dense vector keeps Qdrant's default (unnamed) slot, as before sparse vectors came
_UNREAD = object()

FUSION_DEPTH = 50  # at least this many candidates from each ranking of a hybrid search
# Reciprocal rank fusion's constant, given explicitly so that a ranking does not depend on
# where the collection lives (qdrant-client documents 60 as the server's default; local
# mode uses 2). On the shipped question set 2 beat 10 and 60: recall@1 0.921 against
# 0.913 and 0.913, MRR 0.958 against 0.955 and 0.953.
RRF_K = 2


def dense_vector(vector: Any) -> Any:
    """A point's dense vector, whether Qdrant returned it alone or beside its sparse one."""
    return vector.get(DENSE_VECTOR) if isinstance(vector, dict) else vector


def split_by_bytes(pairs: Sequence[tuple[Article, Chunk]], dimension: int,
                   max_bytes: int = MAX_REQUEST_BYTES) -> list[slice]:
    """Slices of `pairs` whose estimated request size stays under `max_bytes`."""
    slices, start, size = [], 0, 0
    for index, (article, chunk) in enumerate(pairs):
        # text and title twice (JSON escapes), and about as much again for a sparse vector
        point = (len(chunk.text) * 4 + (len(article.title) + len(article.url)) * 2) + dimension * _BYTES_PER_FLOAT
        point += _POINT_OVERHEAD_BYTES
        if index > start and size + point > max_bytes:
            slices.append(slice(start, index))
            start, size = index, 0
        size += point
    if start < len(pairs):
        slices.append(slice(start, len(pairs)))
    return slices


def build_batch(
    pairs: Sequence[tuple[Article, Chunk]], vectors: np.ndarray, sparse: SparseSpec | None = None
) -> models.Batch:
    """Column-oriented upsert body, built for speed: it is on every backend's hot path.

    Each article's hash is computed once per batch (not once per chunk), payloads are
    plain dicts with the fields of `PointPayload`, and the vectors, float32 already
    checked at the embedder boundary, skip pydantic's per-float validation. With
    `sparse`, each point also gets its lexical vector (`ingest.lexical`), made from
    the text the model saw."""
    article_hashes: dict[int, str] = {}
    ids, payloads = [], []
    for article, chunk in pairs:
        article_hash = article_hashes.get(id(article))
        if article_hash is None:
            article_hash = article_hashes[id(article)] = article.content_hash
        ids.append(chunk.point_id)
        payloads.append({
            "id": article.id, "url": article.url, "title": article.title, "text": chunk.text,
            "chunk_index": chunk.chunk_index, "start": chunk.start, "end": chunk.end,
            "chunk_hash": chunk.content_hash, "article_hash": article_hash,
        })
    dense = vectors.tolist()
    if sparse is None:
        return models.Batch.model_construct(ids=ids, vectors=dense, payloads=payloads)
    lexical = []
    for _, chunk in pairs:
        indices, values = passage_vector(chunk.embed_text, sparse)
        lexical.append(models.SparseVector.model_construct(indices=indices, values=values))
    return models.Batch.model_construct(ids=ids, vectors={DENSE_VECTOR: dense, SPARSE_VECTOR: lexical},
                                        payloads=payloads)


# Local mode is plain Python without locks, and the pipeline reads stored vectors on one
# thread while it writes on another (and a searcher may share the client): one call at a
# time per client there. A server needs none.
_LOCAL_LOCKS: "weakref.WeakKeyDictionary[QdrantClient, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCAL_LOCKS_GUARD = threading.Lock()


def _local_lock(client: QdrantClient) -> threading.RLock:
    with _LOCAL_LOCKS_GUARD:
        return _LOCAL_LOCKS.setdefault(client, threading.RLock())


class QdrantStore:
    """One collection in Qdrant, created on first use and checked on every open.

    >>> store = QdrantStore(open_client(path=":memory:"), "wiki")
    """

    def __init__(self, client: QdrantClient, collection: str, *, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.client = client
        self.collection = collection
        self.max_request_bytes = max_request_bytes
        self._guard = _local_lock(client) if self.is_local else contextlib.nullcontext()
        self._sparse: Any = _UNREAD  # the collection's SparseSpec (or None), read before the first write

    @property
    def sparse(self) -> SparseSpec | None:
        """How the collection's lexical vectors are made; None if it has none."""
        if self._sparse is _UNREAD:
            spec = self.read_spec()
            self._sparse = spec.sparse if spec else None
        return self._sparse

    @property
    def is_local(self) -> bool:
        """Embedded local mode, which has no HNSW index to defer."""
        from qdrant_client.local.qdrant_local import QdrantLocal

        return isinstance(getattr(self.client, "_client", None), QdrantLocal)

    # -- collection --------------------------------------------------------
    def read_spec(self) -> CollectionSpec | None:
        """The spec recorded by the run that created the collection, None if absent."""
        if not self.client.collection_exists(self.collection):
            return None
        info = self.client.get_collection(self.collection)
        return CollectionSpec.from_metadata(info.config.metadata)

    def ensure_collection(self, spec: CollectionSpec, *, bulk_load: bool = False) -> bool:
        """Create the collection for `spec`, or check that an existing one was built
        the same way. Returns True when it was created.

        A new collection gets its payload indexes before any point. With `bulk_load`,
        a server builds no HNSW graph while points stream in (`m=0`); call
        `finish_bulk_load` at the end to build it once, over everything."""
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(
                    size=spec.dimension, distance=models.Distance.COSINE
                ),
                # IDF over the whole collection, kept current by Qdrant as points come and go
                sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}
                if spec.sparse else None,
                hnsw_config=models.HnswConfigDiff(m=0 if bulk_load else HNSW_M),
                on_disk_payload=True,
                metadata=spec.to_metadata(),
            )
            if not self.is_local:  # local mode filters by scanning and warns about indexes
                for field_name, schema in PAYLOAD_INDEXES.items():
                    self.client.create_payload_index(self.collection, field_name, field_schema=schema, wait=True)
            log.info("created collection %s (%s, %d dims%s%s)", self.collection, spec.model.name, spec.dimension,
                     ", BM25 sparse vectors" if spec.sparse else "",
                     ", HNSW deferred until the load ends" if bulk_load and not self.is_local else "")
            self._sparse = spec.sparse
            return True
        info = self.client.get_collection(self.collection)
        existing = CollectionSpec.from_metadata(info.config.metadata)
        if existing is None:
            params = info.config.params.vectors
            size = getattr(params, "size", None)
            if (info.points_count or 0) > 0 or size != spec.dimension:
                raise CollectionMismatchError(
                    f"collection {self.collection!r} was not created by this tool (no embedding-model "
                    f"record; {size} dims, {info.points_count} points): pick another --collection"
                )
            if spec.sparse:
                raise CollectionMismatchError(
                    f"collection {self.collection!r} was created without sparse vectors and Qdrant cannot add "
                    "them: pass --sparse none, or another --collection")
            self.client.update_collection(self.collection, metadata=spec.to_metadata())
            self._sparse = None
            return False
        self.check_compatible(existing, spec)
        self._sparse = existing.sparse
        return False

    def check_compatible(self, existing: CollectionSpec, wanted: CollectionSpec) -> None:
        if existing.dimension != wanted.dimension or existing.model.name != wanted.model.name:
            raise CollectionMismatchError(
                f"collection {self.collection!r} holds {existing.dimension}-dimension vectors of "
                f"{existing.model.name!r}; refusing to add {wanted.dimension}-dimension vectors of "
                f"{wanted.model.name!r}. Use --model {existing.model.name} or another --collection"
            )
        if existing.fingerprint != wanted.fingerprint:
            changed = [
                key
                for key in sorted(set(existing.chunking) | set(wanted.chunking))
                if existing.chunking.get(key) != wanted.chunking.get(key)
            ]
            if existing.sparse != wanted.sparse:
                changed.insert(0, "sparse vectors")
            if existing.model != wanted.model:
                changed.insert(0, "model settings")
            raise CollectionMismatchError(
                f"collection {self.collection!r} was built with other settings "
                f"({', '.join(changed) or 'distance'} differ): use the same settings or another --collection"
            )

    def hnsw_m(self) -> int | None:
        return self.client.get_collection(self.collection).config.hnsw_config.m

    def finish_bulk_load(self, *, wait_seconds: float = 0.0) -> None:
        """Turn the HNSW graph back on (m=16) after a bulk load; optionally wait up
        to `wait_seconds` for the server to finish indexing (status green)."""
        self.client.update_collection(self.collection, hnsw_config=models.HnswConfigDiff(m=HNSW_M))
        if self.is_local or wait_seconds <= 0:
            return
        deadline = time.monotonic() + wait_seconds
        while self.client.get_collection(self.collection).status != models.CollectionStatus.GREEN:
            if time.monotonic() > deadline:
                log.warning("collection %s is still indexing after %.0f s; searches work meanwhile, slower",
                            self.collection, wait_seconds)
                return
            time.sleep(2.0)

    def count(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def count_excluding(self, article_ids: Sequence[str]) -> int:
        """Points of every article but these."""
        if not article_ids:
            return self.count()
        exclude = models.Filter(must_not=[
            models.FieldCondition(key="id", match=models.MatchAny(any=list(article_ids)))])
        with self._guard:
            return self.client.count(self.collection, count_filter=exclude, exact=True).count

    def drop(self) -> None:
        self._changed()
        self.client.delete_collection(self.collection)

    def _changed(self) -> None:
        if self.is_local:
            sparse_index.forget(self.client, self.collection)

    # -- points ------------------------------------------------------------
    def upsert_pairs(self, pairs: Sequence[tuple[Article, Chunk]], vectors: np.ndarray) -> None:
        """Write chunks and their vectors in requests bounded in bytes."""
        for part in split_by_bytes(pairs, vectors.shape[1], self.max_request_bytes):
            self.upsert(build_batch(pairs[part], vectors[part], self.sparse))

    @_retry_transient
    def upsert(self, batch: models.Batch) -> None:
        """Write a batch and wait until Qdrant has it (idempotent: ids are deterministic)."""
        crashpoint("upsert")
        with self._guard:
            self._changed()
            self.client.upsert(self.collection, points=batch, wait=True)

    def delete_chunks(self, selections: Sequence[ChunkSelection]) -> int:
        """Delete the selected chunks; returns how many points there were."""
        if not selections:
            return 0
        return self._delete_where(models.Filter(should=[s.condition() for s in selections]))

    def delete_articles(self, article_ids: Sequence[str]) -> int:
        """Delete every point of these articles; returns how many there were."""
        if not article_ids:
            return 0
        return self._delete_where(models.Filter(must=[
            models.FieldCondition(key="id", match=models.MatchAny(any=list(article_ids)))]))

    @_retry_transient
    def _delete_where(self, selection: models.Filter) -> int:
        with self._guard:
            found = self.client.count(self.collection, count_filter=selection, exact=True).count
            if found:
                self._changed()
                self.client.delete(self.collection, points_selector=models.FilterSelector(filter=selection),
                                   wait=True)
        return found

    def scan_chunks(self, batch: int = 2048) -> Iterator[list[tuple[str, int, str]]]:
        """Every point as (article id, chunk index, article hash), a page at a time,
        without vectors. A point without an article id is skipped; a missing index
        reads -1 and a missing hash "" (so that it never looks whole)."""
        fields = models.PayloadSelectorInclude(include=["id", "chunk_index", "article_hash"])
        offset = None
        while True:
            points, offset = self.client.scroll(self.collection, limit=batch, offset=offset,
                                                with_payload=fields, with_vectors=False)
            page = []
            for point in points:
                payload = point.payload or {}
                if payload.get("id") is None:
                    continue
                index = payload.get("chunk_index")
                page.append((str(payload["id"]), index if isinstance(index, int) else -1,
                             str(payload.get("article_hash") or "")))
            yield page
            if offset is None:
                return

    def stored_vectors(self, point_ids: Sequence[str], batch: int = 1024) -> dict[str, tuple[str, np.ndarray]]:
        """The chunk hash and vector of those of `point_ids` that exist."""
        found: dict[str, tuple[str, np.ndarray]] = {}
        for start in range(0, len(point_ids), batch):
            with self._guard:
                points = self.client.retrieve(self.collection, ids=list(point_ids[start:start + batch]),
                                              with_payload=["chunk_hash"], with_vectors=True)
            for point in points:
                chunk_hash = (point.payload or {}).get("chunk_hash")
                vector = dense_vector(point.vector)
                if chunk_hash and vector is not None:
                    found[str(point.id)] = (chunk_hash, np.asarray(vector, dtype=np.float32))
        return found

    def any_point(self) -> dict[str, Any] | None:
        """The payload of some point, or None for an empty collection."""
        points, _ = self.client.scroll(self.collection, limit=1, with_payload=True, with_vectors=False)
        return dict(points[0].payload or {}) if points else None

    def search(
        self,
        vector: np.ndarray,
        *,
        limit: int,
        sparse: tuple[list[int], list[float]] | None = None,
        query_filter: models.Filter | None = None,
        score_threshold: float | None = None,
        group_size: int | None = None,
    ) -> list[StoredHit]:
        """The `limit` nearest points to the dense `vector`; with `sparse` (a query's
        lexical vector), the dense and the lexical rankings fused by reciprocal rank.
        `score_threshold` is on cosine similarity; `group_size` caps hits per article."""
        dense = np.asarray(vector, dtype=np.float32)
        query: dict[str, Any]
        if sparse is None:
            query = {"query": dense.tolist(), "score_threshold": score_threshold}
        else:
            depth = max(4 * limit, FUSION_DEPTH)  # candidates each ranking offers the fusion
            branches = [models.Prefetch(query=dense.tolist(), limit=depth, filter=query_filter,
                                        score_threshold=score_threshold)]
            if sparse[0]:  # a query of stopwords only has no lexical side
                branches.append(models.Prefetch(query=models.SparseVector(indices=sparse[0], values=sparse[1]),
                                                using=SPARSE_VECTOR, limit=depth, filter=query_filter))
            query = {"prefetch": branches, "query": models.RrfQuery(rrf=models.Rrf(k=RRF_K))}
        with_vectors: Any = sparse is not None  # the cosine of fused hits is computed here
        with self._guard:
            if self.is_local and (sparse is not None or group_size is not None
                                  or (query_filter is not None and self.sparse is not None)):
                points = self._search_locally(dense, sparse, limit, query_filter, score_threshold, group_size)
            elif group_size is None:
                points = self.client.query_points(self.collection, limit=limit, query_filter=query_filter,
                                                  with_payload=True, with_vectors=with_vectors, **query).points
            else:
                groups = self.client.query_points_groups(
                    self.collection, group_by="id", group_size=group_size, limit=limit,
                    query_filter=query_filter, with_payload=True, with_vectors=with_vectors, **query).groups
                points = sorted((p for g in groups for p in g.hits), key=lambda p: -p.score)[:limit]
        unit = dense / (float(np.linalg.norm(dense)) or 1.0)
        hits = []
        for p in points:
            similarity = float(p.score)
            if sparse is not None:
                stored = np.asarray(dense_vector(p.vector), dtype=np.float32)
                similarity = float(unit @ stored / (float(np.linalg.norm(stored)) or 1.0))
            hits.append(StoredHit(str(p.id), float(p.score), dict(p.payload or {}), similarity))
        return hits

    def _search_locally(self, dense: np.ndarray, sparse: tuple[list[int], list[float]] | None, limit: int,
                        query_filter: models.Filter | None, score_threshold: float | None,
                        group_size: int | None) -> list[models.ScoredPoint]:
        """Local mode's answer to a hybrid or grouped query, as a server would give it.

        Local mode scores a sparse query by looping over every point in Python, and
        groups results just as slowly; here the sparse ranking comes from
        `ingest.sparse_index`, the fusion is qdrant-client's own RRF, and the cap per
        article is applied to a ranking fetched deep enough (deeper, if it falls short)."""
        from qdrant_client.hybrid.fusion import reciprocal_rank_fusion

        index = sparse_index.index_for(self.client, self.collection) if self.sparse is not None else None
        allowed = index.allowed(query_filter) if index and query_filter else None
        if query_filter is not None and index is not None and allowed is None:  # a filter of another kind
            allowed = self._matching_ids(query_filter, len(index.ids))
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
                articles = {pid: payload.get("id") for pid, payload in self._payloads_unlocked(
                    [str(p.id) for p in ranking], ["id"]).items()}
                per_article: dict[Any, int] = {}
                picked = []
                for point in ranking:
                    article = articles.get(str(point.id))
                    if per_article.get(article, 0) < group_size:
                        per_article[article] = per_article.get(article, 0) + 1
                        picked.append(point)
                        if len(picked) == limit:
                            break
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

    def _matching_ids(self, query_filter: models.Filter, most: int) -> set[str]:
        points, _ = self.client.scroll(self.collection, scroll_filter=query_filter, limit=max(1, most),
                                       with_payload=False, with_vectors=False)
        return {str(p.id) for p in points}

    def _payloads_unlocked(self, point_ids: Sequence[str], fields: Any = True) -> dict[str, dict[str, Any]]:
        points = self.client.retrieve(self.collection, ids=list(point_ids), with_payload=fields, with_vectors=False)
        return {str(p.id): dict(p.payload or {}) for p in points}

    def payloads(self, point_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of those of `point_ids` that exist."""
        with self._guard:
            return self._payloads_unlocked(point_ids)

    def close(self) -> None:
        self.client.close()


# -- names: aliases over physical collections -------------------------------------------
def resolve(client: QdrantClient, name: str) -> Resolved:
    """Where `name` leads: through an alias, or to a collection of that name."""
    for alias in client.get_aliases().aliases:
        if alias.alias_name == name:
            return Resolved(name, alias.collection_name, True)
    if client.collection_exists(name):
        return Resolved(name, name, False)
    return Resolved(name, None, False)


def point_alias(client: QdrantClient, alias: str, collection: str, *, replace_alias: bool) -> None:
    """Make `alias` lead to `collection`, in one atomic change (delete and create)."""
    actions: list[Any] = []
    if replace_alias:
        actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
    actions.append(models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
    client.update_collection_aliases(change_aliases_operations=actions)


def aliases_of(client: QdrantClient, collection: str) -> list[str]:
    return [a.alias_name for a in client.get_aliases().aliases if a.collection_name == collection]
