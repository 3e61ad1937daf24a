"""The `Store` on a Qdrant server or cluster, through `qdrant-client`.

What a server adds over the embedded default: payload indexes created before the
load, indexing deferred during a bulk load and done once at the end, grouped
queries for the per-article cap, prefetch + RRF fusion on the server, and retries of
transient faults (timeouts, dropped connections, 5xx, gRPC UNAVAILABLE, and rate
limits, after the server's `Retry-After`).

How a collection is laid out, created and indexed after a bulk load is
`ingest.store.layout`'s.

    >>> store = ServerStore.connect("http://localhost:6333", collection="wikipedia")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from ingest.crashpoints import crashpoint
from ingest.definitions import DEFINITION_VECTOR
from ingest.lexical import SPARSE_VECTOR, SparseQuery
from ingest.settings import ServerLayout, grpc_port_for
from ingest.store import layout as server_layout
from ingest.store.base import (
    FUSION_DEPTH,
    OVERSAMPLING,
    RRF_K,
    RRF_WEIGHTS,
    UNREAD,
    ChunkRef,
    ChunkSelection,
    Fused,
    Pair,
    PayloadFilter,
    RecordedStore,
    Resolved,
    StoredHit,
    StoredPoint,
    StoredVector,
    capped_ranking,
    chunk_ref,
    definition_depth,
    with_definitions,
)
from ingest.store.points import (
    DENSE_VECTOR,
    MAX_REQUEST_BYTES,
    articles_filter,
    batch_of,
    build_batch,
    definition_vector,
    definitions_of,
    dense_vector,
    hits_from,
    payload_filter,
    selection_filter,
    split_by_bytes,
    stored_chunk_vector,
)
from ingest.store.retries import retry_transient
from ingest.store.specs import check_adoptable, check_compatible
from schemas import CollectionSpec

log = logging.getLogger(__name__)

# Every dense search asks for the quantized candidates to be rescored with the originals,
# from twice as many as it returns (a no-op on a collection without quantization).
RESCORED = models.SearchParams(quantization=models.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING))
IMPORT_BATCH = 256  # points per request when copying between stores


class ServerStore(RecordedStore):
    """One collection on a Qdrant server, through a `QdrantClient` (see the module docstring).

    The reader of folders written by qdrant-client's local mode (`ingest.store.legacy`)
    builds on this class: local mode speaks the same API in process."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        location: str = "",
        max_request_bytes: int = MAX_REQUEST_BYTES,
        layout: ServerLayout = ServerLayout(),
    ) -> None:
        self.client = client
        self.layout = layout
        self.collection = collection
        self.location = location
        self.max_request_bytes = max_request_bytes
        self._guard: Any = contextlib.nullcontext()  # a server takes concurrent calls
        self._recorded: Any = UNREAD  # the collection's build record (or None), read before the first write
        self._deferred = False  # this connection created the collection with its graph deferred

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        collection: str,
        api_key: str | None = None,
        prefer_grpc: bool = True,
        timeout: int = 120,
        location: str | None = None,
        layout: ServerLayout = ServerLayout(),
        grpc_port: int | None = None,
    ) -> ServerStore:
        """`grpc_port`: where gRPC is served (default: one above the URL's port, `grpc_port_for`)."""
        # No version check on connect: it warns on stderr when the server is unreachable (the first
        # call fails then, in one line); `preflight` checks the server's version itself.
        client = QdrantClient(
            url=url,
            api_key=api_key,
            prefer_grpc=prefer_grpc,
            timeout=timeout,
            grpc_port=grpc_port or grpc_port_for(url),
            check_compatibility=False,
        )
        return cls(client, collection, location=location or url, layout=layout)

    def at(self, collection: str) -> ServerStore:
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.collection, other._recorded, other._deferred = collection, UNREAD, False
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, collection={self.collection!r})"

    # -- names -------------------------------------------------------------
    def resolve(self, name: str) -> Resolved:
        """Where `name` leads: through an alias, or to a collection of that name."""
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == name:
                return Resolved(name, alias.collection_name, True)
        if self.client.collection_exists(name):
            return Resolved(name, name, False)
        return Resolved(name, None, False)

    def point_alias(self, alias: str, collection: str, *, replace_alias: bool) -> None:
        actions: list[Any] = []
        if replace_alias:
            actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        actions.append(
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        )
        self.client.update_collection_aliases(change_aliases_operations=actions)

    def aliases_of(self, collection: str) -> list[str]:
        return [a.alias_name for a in self.client.get_aliases().aliases if a.collection_name == collection]

    def delete_alias(self, alias: str) -> None:
        self.client.update_collection_aliases(
            change_aliases_operations=[models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))]
        )

    def server_version(self) -> str | None:
        return str(self.client.info().version)

    # -- collection --------------------------------------------------------
    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def read_spec(self) -> CollectionSpec | None:
        if not self.exists():
            return None
        return CollectionSpec.from_metadata(self.client.get_collection(self.collection).config.metadata)

    def ensure_collection(self, spec: CollectionSpec, *, bulk_load: bool = False) -> bool:
        """Create the collection for `spec`, or check that an existing one was built
        the same way. Returns True when it was created.

        A new collection gets its payload indexes before any point. With `bulk_load`,
        a server builds no HNSW graph while points stream in (`m=0`); `finish_bulk_load`
        builds it once, over everything."""
        if not self.exists():
            self._create(spec, bulk_load=bulk_load)
            self._deferred = bulk_load and self._server_indexes
            log.info(
                "created collection %s (%s, %d dims%s%s%s)",
                self.collection,
                spec.model.name,
                spec.dimension,
                ", BM25 sparse vectors" if spec.sparse else "",
                ", definition vectors" if spec.definition else "",
                ", indexing deferred until the load ends" if bulk_load and self._server_indexes else "",
            )
            self._recorded = spec
            return True
        info = self.client.get_collection(self.collection)
        existing = CollectionSpec.from_metadata(info.config.metadata)
        if existing is None:
            check_adoptable(
                self.collection,
                spec,
                points=info.points_count or 0,
                dimension=getattr(info.config.params.vectors, "size", None),
            )
            self.client.update_collection(self.collection, metadata=spec.to_metadata())
            self._recorded = replace(spec, sparse=None, definition=None)  # adopted: its dense vector alone
            return False
        check_compatible(self.collection, existing, spec)
        if self._server_indexes:
            server_layout.add_payload_indexes(self.client, self.collection, have=set(info.payload_schema or {}))
        self._recorded = existing
        return False

    def _create(self, spec: CollectionSpec, *, bulk_load: bool) -> None:
        if not self._server_indexes:  # local mode: no quantization, payload indexes or deferred graph
            self.client.create_collection(
                self.collection,
                metadata=spec.to_metadata(),
                vectors_config=server_layout.dense_vectors(
                    spec, models.VectorParams(size=spec.dimension, distance=models.Distance.COSINE)
                ),
                sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}
                if spec.sparse
                else None,
            )
            return
        server_layout.create_collection(
            self.client,
            self.collection,
            spec,
            self.layout,
            bulk_load=bulk_load,
            tiers=self._version() >= server_layout.MEMORY_TIERS,
        )

    def _version(self) -> tuple[int, ...]:
        version = self.server_version() or ""
        return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())

    def finish_bulk_load(self, *, wait_seconds: float = 0.0, poll_seconds: float = 2.0) -> bool:
        """Turn indexing back on if a bulk load deferred it (a collection created
        elsewhere, by an earlier stopped run, is asked for its configuration), then wait
        up to `wait_seconds` for the server to finish (`ingest.store.layout`). True once
        it is green with its optimizer idle: until then searches work, over segments
        without a graph, slowly at scale."""
        if self._server_indexes and (self._deferred or server_layout.deferred(self.client, self.collection)):
            self._deferred = False
            server_layout.resume_indexing(self.client, self.collection)
        return server_layout.wait_until_indexed(
            self.client, self.collection, wait_seconds=wait_seconds, poll_seconds=poll_seconds
        )

    _server_indexes = True  # payload indexes, and an HNSW graph a bulk load can defer
    _rescore: Any = RESCORED  # search parameters for the dense side

    def count(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def count_excluding(self, article_ids: Sequence[str]) -> int:
        if not article_ids:
            return self.count()
        exclude = models.Filter(must_not=articles_filter(article_ids).must)
        with self._guard:
            return self.client.count(self.collection, count_filter=exclude, exact=True).count

    def drop(self) -> None:
        self.client.delete_collection(self.collection)

    # -- points ------------------------------------------------------------
    def upsert_pairs(
        self, pairs: Sequence[Pair], vectors: np.ndarray, definitions: Mapping[int, np.ndarray] | None = None
    ) -> None:
        """Write chunks and their vectors in requests bounded in bytes."""
        definitions = definitions if self.definitions else None
        for part in split_by_bytes(pairs, vectors.shape[1], self.max_request_bytes):
            ours = {i - part.start: v for i, v in (definitions or {}).items() if part.start <= i < part.stop}
            self.upsert(build_batch(pairs[part], vectors[part], self.sparse, ours))

    @retry_transient
    def upsert(self, batch: models.Batch | list[models.PointStruct]) -> None:
        """Write a batch and wait until Qdrant has it (idempotent: ids are deterministic)."""
        crashpoint("upsert")
        with self._guard:
            self.client.upsert(self.collection, points=batch, wait=True)

    def flush(self) -> None:
        pass  # a server acknowledges (wait=True) what its WAL holds

    def delete_chunks(self, selections: Sequence[ChunkSelection]) -> int:
        if not selections:
            return 0
        return self._delete_where(models.Filter(should=[selection_filter(s) for s in selections]))

    def delete_articles(self, article_ids: Sequence[str]) -> int:
        if not article_ids:
            return 0
        return self._delete_where(articles_filter(article_ids))

    @retry_transient
    def _delete_where(self, selection: models.Filter) -> int:
        with self._guard:
            found = self.client.count(self.collection, count_filter=selection, exact=True).count
            if found:
                self.client.delete(self.collection, points_selector=models.FilterSelector(filter=selection), wait=True)
        return found

    def scan_chunks(self, batch: int = 2048) -> Iterator[list[ChunkRef]]:
        """Every point's `ChunkRef`, a page at a time, without vectors (`ChunkRef` says how
        incomplete payloads read)."""
        fields = models.PayloadSelectorInclude(include=["id", "chunk_index", "article_hash"])
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection, limit=batch, offset=offset, with_payload=fields, with_vectors=False
            )
            yield [ref for point in points if (ref := chunk_ref(point.payload or {})) is not None]
            if offset is None:
                return

    def stored_vectors(self, point_ids: Sequence[str], batch: int = 1024) -> dict[str, StoredVector]:
        found: dict[str, StoredVector] = {}
        for start in range(0, len(point_ids), batch):
            with self._guard:
                points = self.client.retrieve(
                    self.collection,
                    ids=list(point_ids[start : start + batch]),
                    with_payload=["chunk_hash"],
                    with_vectors=self._vectors,
                )
            for point in points:
                if (stored := stored_chunk_vector(point.payload, point.vector)) is not None:
                    found[str(point.id)] = stored
        return found

    @property
    def _vectors(self) -> Any:
        """The dense vectors a point is read with: its chunk's, and its definition where kept."""
        return [DENSE_VECTOR, DEFINITION_VECTOR] if self.definitions else True

    def any_point(self) -> dict[str, Any] | None:
        points, _ = self.client.scroll(self.collection, limit=1, with_payload=True, with_vectors=False)
        return dict(points[0].payload or {}) if points else None

    def payloads(self, point_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payloads of those of `point_ids` that exist."""
        with self._guard:
            points = self.client.retrieve(self.collection, ids=list(point_ids), with_payload=True, with_vectors=False)
        return {str(p.id): dict(p.payload or {}) for p in points}

    def export_points(self, batch: int = 512) -> Iterator[list[StoredPoint]]:
        offset = None
        while True:
            with self._guard:
                points, offset = self.client.scroll(
                    self.collection, limit=batch, offset=offset, with_payload=True, with_vectors=self._vectors
                )
            yield [
                StoredPoint(
                    str(p.id),
                    np.asarray(dense_vector(p.vector), dtype=np.float32),
                    dict(p.payload or {}),
                    definition_vector(p.vector),
                )
                for p in points
                if dense_vector(p.vector) is not None
            ]
            if offset is None:
                return

    def import_points(self, points: Sequence[StoredPoint], texts: Sequence[str]) -> None:
        for start in range(0, len(points), IMPORT_BATCH):
            part = points[start : start + IMPORT_BATCH]
            self.upsert(
                batch_of(
                    [p.id for p in part],
                    [p.vector.tolist() for p in part],
                    [p.payload for p in part],
                    texts[start : start + IMPORT_BATCH],
                    self.sparse,
                    definitions_of(part) if self.definitions else None,
                )
            )

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
        """The `limit` nearest points to the dense `vector`; with `sparse` (a query's
        lexical vector), the dense and the lexical rankings fused by reciprocal rank.
        `score_threshold` is on cosine similarity; `group_size` caps hits per article."""
        dense = np.asarray(vector, dtype=np.float32)
        query_filter = payload_filter(where)
        query: dict[str, Any]
        if sparse is not None and self.definitions:
            picked = capped_ranking(
                lambda depth: self._with_definitions(dense, sparse, depth, query_filter, score_threshold),
                limit=limit,
                group_size=group_size,
                article_of=_article,
            )
            return hits_from(picked, dense, fused=True)
        if sparse is None:
            query = {"query": dense.tolist(), "score_threshold": score_threshold, "search_params": self._rescore}
        else:
            branches = self._branches(dense, sparse, max(4 * limit, FUSION_DEPTH), query_filter, score_threshold)
            fusion = models.Rrf(k=RRF_K, weights=list(RRF_WEIGHTS[: len(branches)]))
            query = {"prefetch": branches, "query": models.RrfQuery(rrf=fusion)}
        with_vectors: Any = sparse is not None  # the cosine of fused hits is computed here
        with self._guard:
            if group_size is None:
                points = self.client.query_points(
                    self.collection,
                    limit=limit,
                    query_filter=query_filter,
                    with_payload=True,
                    with_vectors=with_vectors,
                    **query,
                ).points
            else:
                groups = self.client.query_points_groups(
                    self.collection,
                    group_by="id",
                    group_size=group_size,
                    limit=limit,
                    query_filter=query_filter,
                    with_payload=True,
                    with_vectors=with_vectors,
                    **query,
                ).groups
                points = sorted((p for g in groups for p in g.hits), key=lambda p: -p.score)[:limit]
        return hits_from(points, dense, fused=sparse is not None)

    def _branches(
        self, dense: np.ndarray, sparse: SparseQuery, depth: int, query_filter: Any, score_threshold: float | None
    ) -> list[models.Prefetch]:
        """A hybrid query's prefetches: `depth` candidates from each ranking, for the fusion."""
        branches = [
            models.Prefetch(
                query=dense.tolist(),
                limit=depth,
                filter=query_filter,
                score_threshold=score_threshold,
                params=self._rescore,
            )
        ]
        if sparse.indices:  # a query of stopwords only has no lexical side
            branches.append(
                models.Prefetch(
                    query=models.SparseVector(indices=sparse.indices, values=sparse.values),
                    using=SPARSE_VECTOR,
                    limit=depth,
                    filter=query_filter,
                )
            )
        return branches

    def _with_definitions(
        self, dense: np.ndarray, sparse: SparseQuery, limit: int, query_filter: Any, score_threshold: float | None
    ) -> list:
        """The first `limit` points of a hybrid ranking with the definitions fused in by article
        (`ingest.store.base.with_definitions`): the dense and lexical rankings fused by the server
        and the first chunks ranked by their definition, their article ids alone, then the kept
        points read whole (three requests: a batch query is not needed for so few)."""
        depth = max(4 * limit, FUSION_DEPTH)
        branches = self._branches(dense, sparse, depth, query_filter, score_threshold)
        fusion = models.Rrf(k=RRF_K, weights=list(RRF_WEIGHTS[: len(branches)]))
        ids_only = ["id"]  # every candidate with its article id alone; the kept points are read whole after
        with self._guard:
            fused = self.client.query_points(
                self.collection,
                prefetch=branches,
                query=models.RrfQuery(rrf=fusion),
                query_filter=query_filter,
                limit=definition_depth(limit),
                with_payload=ids_only,
                with_vectors=False,
            ).points
            defined = self.client.query_points(
                self.collection,
                query=dense.tolist(),
                using=DEFINITION_VECTOR,
                query_filter=query_filter,
                score_threshold=score_threshold,
                search_params=self._rescore,
                limit=definition_depth(limit),
                with_payload=ids_only,
                with_vectors=False,
            ).points
            kept = with_definitions(fused, defined, _article, limit=limit)
            records = self.client.retrieve(
                self.collection, ids=[p.id for p in kept], with_payload=True, with_vectors=[DENSE_VECTOR]
            )
        found = {str(r.id): r for r in records}
        return [
            Fused(p.id, p.score, dict(record.payload or {}), record.vector)
            for p in kept
            if (record := found.get(str(p.id))) is not None
        ]

    def warm(self) -> None:
        pass  # a server keeps its indexes itself

    def close(self) -> None:
        self.client.close()


def _article(point: Any) -> Any:
    return (point.payload or {}).get("id")
