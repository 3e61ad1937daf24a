"""Qdrant, through `qdrant-client`: embedded local mode by default, a server
(or cluster) when a URL is given. The only module that talks to Qdrant."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from qdrant_client import QdrantClient, models
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ingest.errors import CollectionMismatchError, StoreError, StoreLockedError
from schemas import Article, Chunk, CollectionSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredHit:
    id: str
    score: float
    payload: dict[str, Any]


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


def split_by_bytes(pairs: Sequence[tuple[Article, Chunk]], dimension: int,
                   max_bytes: int = MAX_REQUEST_BYTES) -> list[slice]:
    """Slices of `pairs` whose estimated request size stays under `max_bytes`."""
    slices, start, size = [], 0, 0
    for index, (article, chunk) in enumerate(pairs):
        point = (len(chunk.text) + len(article.title) + len(article.url)) * 2 + dimension * _BYTES_PER_FLOAT
        point += _POINT_OVERHEAD_BYTES
        if index > start and size + point > max_bytes:
            slices.append(slice(start, index))
            start, size = index, 0
        size += point
    if start < len(pairs):
        slices.append(slice(start, len(pairs)))
    return slices


def build_batch(
    pairs: Sequence[tuple[Article, Chunk]], vectors: np.ndarray
) -> models.Batch:
    """Column-oriented upsert body, built for speed: it is on every backend's hot path.

    Each article's hash is computed once per batch (not once per chunk), payloads are
    plain dicts with the fields of `PointPayload`, and the vectors, float32 already
    checked at the embedder boundary, skip pydantic's per-float validation."""
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
    return models.Batch.model_construct(ids=ids, vectors=vectors.tolist(), payloads=payloads)


class QdrantStore:
    """One collection in Qdrant, created on first use and checked on every open.

    >>> store = QdrantStore(open_client(path=":memory:"), "wiki")
    """

    def __init__(self, client: QdrantClient, collection: str, *, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.client = client
        self.collection = collection
        self.max_request_bytes = max_request_bytes

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
                hnsw_config=models.HnswConfigDiff(m=0 if bulk_load else HNSW_M),
                on_disk_payload=True,
                metadata=spec.to_metadata(),
            )
            if not self.is_local:  # local mode filters by scanning and warns about indexes
                for field_name, schema in PAYLOAD_INDEXES.items():
                    self.client.create_payload_index(self.collection, field_name, field_schema=schema, wait=True)
            log.info("created collection %s (%s, %d dims%s)", self.collection, spec.model.name, spec.dimension,
                     ", HNSW deferred until the load ends" if bulk_load and not self.is_local else "")
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
            self.client.update_collection(self.collection, metadata=spec.to_metadata())
            return False
        self.check_compatible(existing, spec)
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

    # -- points ------------------------------------------------------------
    def upsert_pairs(self, pairs: Sequence[tuple[Article, Chunk]], vectors: np.ndarray) -> None:
        """Write chunks and their vectors in requests bounded in bytes."""
        for part in split_by_bytes(pairs, vectors.shape[1], self.max_request_bytes):
            self.upsert(build_batch(pairs[part], vectors[part]))

    @_retry_transient
    def upsert(self, batch: models.Batch) -> None:
        """Write a batch and wait until Qdrant has it (idempotent: ids are deterministic)."""
        self.client.upsert(self.collection, points=batch, wait=True)

    def search(
        self, vector: np.ndarray, *, limit: int, query_filter: models.Filter | None = None
    ) -> list[StoredHit]:
        result = self.client.query_points(
            self.collection,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            limit=limit,
            query_filter=query_filter,
            with_payload=True,
        )
        return [StoredHit(str(p.id), float(p.score), dict(p.payload or {})) for p in result.points]

    def close(self) -> None:
        self.client.close()
