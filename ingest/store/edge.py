"""The embedded default `Store`: Qdrant Edge, Qdrant's own storage engine in this
process (`qdrant-edge-py`), with its real sparse and payload indexes, prefetch +
RRF fusion and a write-ahead log.

Edge has one collection per folder ("shard") and no collection metadata, aliases
or grouped queries in its Python API; what this project needs of them is written
small here, under the store's folder:

    <folder>/edge/shards/<collection>/        one shard per physical collection
    <folder>/edge/specs/<collection>.json     its build record (`CollectionSpec`), replaced durably
    <folder>/edge/graphs/<collection>.json    points written outside its search index (`finish_bulk_load`)
    <folder>/edge/aliases.json                alias -> collection, replaced durably
    <folder>/edge/.lock                       held (flock) by the process using the folder

The per-article cap is applied to a ranking fetched deep enough (deeper, if it
falls short). A folder is held by one process at a time; a second one gets
`StoreLockedError` naming the holder (`ingest.store.edge_folder`: the lock, the
records' durability, atomic creation). `update()` does not fsync: an acknowledged
write survives the process being killed, not a power cut, until `flush()`, which
`close()` and `finish_bulk_load()` call.

Search is exact until a load leaves `INDEX_FROM` points outside a graph (the sample's
10,260 chunks never do: a hybrid query over them takes milliseconds); then
`finish_bulk_load` builds the HNSW graph in a process of its own
(`ingest.store.edge_index`), since `optimize()` blocks every thread of its process.

    >>> store = EdgeStore.open("qdrant_data", collection="wikipedia")   # or ":memory:"
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ingest.crashpoints import crashpoint
from ingest.definitions import DEFINITION_VECTOR
from ingest.errors import StoreError
from ingest.lexical import SPARSE_VECTOR, SparseQuery, edge_vector, passage_text
from ingest.store import edge_index
from ingest.store.base import (
    FILTER_FIELDS,
    FUSION_DEPTH,
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
from ingest.store.edge_folder import Folder, acquire, read_record
from ingest.store.edge_index import build_in_child, definition_params, search_params, shard_config
from ingest.store.points import (
    definition_vector,
    definitions_of,
    dense_vector,
    hits_from,
    point_payloads,
    stored_chunk_vector,
)
from ingest.store.specs import check_compatible
from schemas import CollectionSpec

try:
    import qdrant_edge as q  # the embedded engine: only this backend needs it
except ImportError:  # pragma: no cover - depends on the install
    q = None

DENSE = ""  # the dense vector's name: Qdrant's unnamed default, as on a server collection
BATCH = 256  # points per update
log = logging.getLogger(__name__)


class EdgeStore(RecordedStore):
    """One collection in a folder of Qdrant Edge shards (see the module docstring)."""

    def __init__(self, folder: Folder, collection: str, *, location: str, lease: list[bool] | None = None) -> None:
        self._folder, self.collection, self.location = folder, collection, location
        self._lease = lease if lease is not None else [False]  # shared with `at()`'s stores: released once
        self._recorded: Any = UNREAD  # the collection's build record (or None), read once, not per write
        self.exact = False  # True: dense search without the graph (what benchmarks measure recall against)

    @classmethod
    def open(cls, path: str | Path, *, collection: str, create: bool = True) -> EdgeStore:
        if q is None:
            raise StoreError("the embedded store needs qdrant-edge-py: pip install qdrant-edge-py")
        if str(path) == ":memory:":
            return cls(
                acquire(Path(tempfile.mkdtemp(prefix="qdrant-edge-")) / "edge", temporary=True),
                collection,
                location=":memory:",
            )
        root = Path(path) / "edge"
        if not create and not root.is_dir():
            raise StoreError(
                f"no store at {path}: build one with `python -m ingest` (or pass the --qdrant-path that holds it)"
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store folder {path}: {exc.strerror or exc}: pass another --qdrant-path"
            ) from exc
        return cls(acquire(root), collection, location=str(path))

    def at(self, collection: str) -> EdgeStore:
        return type(self)(self._folder, collection, location=self.location, lease=self._lease)

    def __repr__(self) -> str:
        return f"EdgeStore({self.location!r}, collection={self.collection!r})"

    @property
    def _shard(self) -> Any:
        shard = self._folder.shard(self.collection)
        if shard is None:
            raise StoreError(f"collection {self.collection!r} does not exist in {self.location}")
        return shard

    def _call(self, method: str, *args: Any) -> Any:
        """A call on the shard under the folder's lock: a build closes the shard (`optimize`) while
        the pipeline's reader may be looking vectors up; it waits, then finds the shard again."""
        with self._folder.lock:
            return getattr(self._shard, method)(*args)

    # -- names -------------------------------------------------------------
    def resolve(self, name: str) -> Resolved:
        with self._folder.lock:
            target = self._folder.aliases().get(name)
            if target is not None:
                return Resolved(name, target, True)
            return Resolved(name, name if self.at(name).exists() else None, False)

    def point_alias(self, alias: str, collection: str, *, replace_alias: bool) -> None:
        with self._folder.lock:
            aliases = self._folder.aliases()
            if alias in aliases and not replace_alias:
                raise StoreError(f"alias {alias!r} already exists")
            if self.at(alias).exists():
                raise StoreError(f"{alias!r} is a collection: an alias cannot take its name")
            aliases[alias] = collection
            self._folder.write_json(self._folder.root / "aliases.json", aliases)

    def aliases_of(self, collection: str) -> list[str]:
        return sorted(alias for alias, target in self._folder.aliases().items() if target == collection)

    def delete_alias(self, alias: str) -> None:
        with self._folder.lock:
            aliases = self._folder.aliases()
            if aliases.pop(alias, None) is not None:
                self._folder.write_json(self._folder.root / "aliases.json", aliases)

    def server_version(self) -> str | None:
        return None  # an engine in this process

    # -- collection --------------------------------------------------------
    def exists(self) -> bool:
        return self._folder.shard_path(self.collection).is_dir()

    def read_spec(self) -> CollectionSpec | None:
        path = self._folder.spec_path(self.collection)
        if not self.exists() or not path.is_file():
            return None
        return CollectionSpec.from_metadata(read_record(path))

    def ensure_collection(self, spec: CollectionSpec, *, bulk_load: bool = False) -> bool:
        with self._folder.lock:
            if self.exists():
                existing = self.read_spec()
                if existing is not None:
                    check_compatible(self.collection, existing, spec)
                    return False
                if self._unrecorded(spec):
                    self._recorded = spec
                    return False
            config = shard_config(spec.dimension, bool(spec.sparse), definitions=spec.definition is not None)

            def indexes(shard: Any) -> None:  # filters match one article's few points: no graph links per value
                keyword = q.KeywordIndexParams(enable_hnsw=False, memory=q.Memory.Cold)
                for field in FILTER_FIELDS:
                    shard.update(q.UpdateOperation.create_field_index(field, keyword))

            self._folder.create(self.collection, config, spec.to_metadata(), indexes)
            self._folder.outside[self.collection] = 0
            self._folder.write_json(self._folder.graph_path(self.collection), {"outside": 0})
            self._recorded = spec
            return True

    def _unrecorded(self, spec: CollectionSpec) -> bool:
        """A shard without a build record (an earlier version's interrupted creation, or a record
        deleted as advised): recorded again when its name carries `spec`'s fingerprint (the
        name a run gives what it builds), removed if empty, else refused naming the folder.
        True: the shard is kept, with its record."""
        path = self._folder.shard_path(self.collection)
        if self.collection.endswith(f"-{spec.fingerprint[:8]}"):
            self._folder.write_json(self._folder.spec_path(self.collection), spec.to_metadata())
            log.warning("wrote the build record of %s again, from the settings its name was made from", path)
            return True
        if points := self.count():
            raise StoreError(
                f"collection {self.collection!r} in {self.location} has no build record (nothing "
                f"says how it was built) but holds {points} points: delete the folder {path} "
                "and run again, or pick another --collection"
            )
        self._folder.drop(self.collection)
        log.warning("removed %s: an empty collection without a build record (an interrupted creation)", path)
        return False

    def finish_bulk_load(self, *, wait_seconds: float = 0.0) -> bool:
        """Flush, and build the search index if `INDEX_FROM` points or more are outside one
        (`ingest.store.edge_index`: in a process of its own, with progress). True: the
        collection answers searches, exactly where it has no graph."""
        self._call("flush")  # what a power cut could otherwise take
        outside = self._outside()
        if outside >= edge_index.INDEX_FROM:
            self.optimize()  # records the count first, then none left outside
        else:
            self._folder.write_json(self._folder.graph_path(self.collection), {"outside": outside})
        return True

    def _outside(self) -> int:
        """Points outside the graph. Every point written (added or changed) lands in the shard's
        appendable segment, searched exactly, until the next build; Edge does not say how many
        are there (its `indexed_vectors_count` counts exactly searched segments too), so this
        process counts its writes (`Folder.outside`) from the graph record, which carries the
        count across runs. A collection without the record (an earlier version's, which built
        no graph) has all its points outside."""
        with self._folder.lock:
            if self.collection not in self._folder.outside:
                path = self._folder.graph_path(self.collection)
                self._folder.outside[self.collection] = (
                    int(read_record(path)["outside"]) if path.is_file() else self.count()
                )
            return self._folder.outside[self.collection]

    def optimize(self) -> None:
        """Build the HNSW graph over every point outside one, in a process of its own
        (`ingest.store.edge_index`); the graph record says so once it is done."""
        spec = self.read_spec()
        if spec is None:
            raise StoreError(f"collection {self.collection!r} has no build record: run the command that built it")
        path = self._folder.graph_path(self.collection)
        with self._folder.lock:
            outside = self._outside()
            self._folder.write_json(path, {"outside": outside})  # kept if the build is stopped
            self._folder.close_shard(self.collection)
            build_in_child(
                self._folder.shard_path(self.collection),
                spec.dimension,
                bool(spec.sparse),
                definitions=spec.definition is not None,
                points=outside,
            )
            self._folder.outside[self.collection] = 0
            self._folder.write_json(path, {"outside": 0})

    def drop(self) -> None:
        self._folder.drop(self.collection)

    def count(self) -> int:
        return int(self._call("count", q.CountRequest(exact=True)))

    def count_excluding(self, article_ids: Sequence[str]) -> int:
        if not article_ids:
            return self.count()
        others = q.Filter(must_not=[q.FieldCondition("id", match=q.MatchAny(list(article_ids)))])
        return int(self._call("count", q.CountRequest(exact=True, filter=others)))

    # -- points ------------------------------------------------------------
    def upsert_pairs(
        self, pairs: Sequence[Pair], vectors: np.ndarray, definitions: Mapping[int, np.ndarray] | None = None
    ) -> None:
        ids, payloads = point_payloads(pairs)
        sparse = self.sparse
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
        sparse, keep_definitions = self.sparse, self.definitions
        points = []
        for i, (pid, payload, text, vector) in enumerate(zip(ids, payloads, texts, vectors)):
            named: dict[str, Any] = {DENSE: vector.tolist()}
            if sparse is not None:
                named[SPARSE_VECTOR] = edge_vector(text, sparse)
            if keep_definitions and (definition := definitions.get(i)) is not None:
                named[DEFINITION_VECTOR] = definition.tolist()
            points.append(q.Point(pid, named, payload))
        for start in range(0, len(points), BATCH):
            self._folder.check_room()
            crashpoint("upsert")
            with self._folder.lock:  # the write and its count together
                self._shard.update(q.UpdateOperation.upsert_points(points[start : start + BATCH]))
                self._folder.outside[self.collection] = self._outside() + len(points[start : start + BATCH])
        if self._outside() >= edge_index.SEGMENT_POINTS:  # a long load: a graph now, memory stays flat
            self.optimize()

    def flush(self) -> None:
        """`update()` survives a killed process, not a power cut: sync the shard's WAL and segments."""
        self._call("flush")

    def delete_chunks(self, selections: Sequence[ChunkSelection]) -> int:
        if not selections:
            return 0
        return self._delete_where(q.Filter(should=[_selection(s) for s in selections]))

    def delete_articles(self, article_ids: Sequence[str]) -> int:
        if not article_ids:
            return 0
        return self._delete_where(q.Filter(must=[q.FieldCondition("id", match=q.MatchAny(list(article_ids)))]))

    def _delete_where(self, where: Any) -> int:
        found = int(self._call("count", q.CountRequest(exact=True, filter=where)))  # update() returns nothing
        if found:
            self._folder.check_room()
            self._call("update", q.UpdateOperation.delete_points_by_filter(where))
        return found

    def scan_chunks(self, batch: int = 2048) -> Iterator[list[ChunkRef]]:
        fields = q.PayloadSelector.Include(["id", "chunk_index", "article_hash"])
        offset = None
        while True:
            points, offset = self._call(
                "scroll", q.ScrollRequest(offset=offset, limit=batch, with_payload=fields, with_vector=False)
            )
            yield [ref for point in points if (ref := chunk_ref(point.payload or {})) is not None]
            if offset is None:
                return

    def stored_vectors(self, point_ids: Sequence[str]) -> dict[str, StoredVector]:
        found: dict[str, StoredVector] = {}
        for start in range(0, len(point_ids), 1024):
            for record in self._call("retrieve", list(point_ids[start : start + 1024]), ["chunk_hash"], self._vectors):
                if (stored := stored_chunk_vector(record.payload, record.vector)) is not None:
                    found[str(record.id)] = stored
        return found

    def payloads(self, point_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {str(r.id): dict(r.payload or {}) for r in self._call("retrieve", list(point_ids), True, False)}

    def export_points(self, batch: int = 512) -> Iterator[list[StoredPoint]]:
        offset = None
        while True:
            points, offset = self._call(
                "scroll", q.ScrollRequest(offset=offset, limit=batch, with_payload=True, with_vector=self._vectors)
            )
            yield [
                StoredPoint(
                    str(p.id), np.asarray(dense, dtype=np.float32), dict(p.payload or {}), definition_vector(p.vector)
                )
                for p in points
                if (dense := dense_vector(p.vector)) is not None
            ]
            if offset is None:
                return

    @property
    def _vectors(self) -> list[str]:
        """The dense vectors a point is read with: its chunk's, and its definition where kept."""
        return [DENSE, DEFINITION_VECTOR] if self.definitions else [DENSE]

    def any_point(self) -> dict[str, Any] | None:
        points, _ = self._call("scroll", q.ScrollRequest(limit=1, with_payload=True, with_vector=False))
        return dict(points[0].payload or {}) if points else None

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
        flt = _filter(where)
        picked = capped_ranking(
            lambda depth: self._query(dense, sparse, depth, flt, score_threshold),
            limit=limit,
            group_size=group_size,
            article_of=_article,
        )
        return hits_from(picked, dense, fused=sparse is not None)

    def _query(
        self, dense: np.ndarray, sparse: SparseQuery | None, limit: int, flt: Any, score_threshold: float | None
    ) -> list:
        if sparse is None:
            return self._call(
                "query",
                q.QueryRequest(
                    limit=limit,
                    query=q.Query.Nearest(dense.tolist()),
                    filter=flt,
                    score_threshold=score_threshold,
                    params=search_params(exact=self.exact),
                    with_payload=True,
                ),
            )
        depth = max(4 * limit, FUSION_DEPTH)
        branches = [
            q.Prefetch(
                limit=depth,
                query=q.Query.Nearest(dense.tolist()),
                params=search_params(exact=self.exact),
                filter=flt,
                score_threshold=score_threshold,
            )
        ]
        if sparse.indices:  # a query of stopwords only has no lexical side
            lexical = q.SparseVector(list(sparse.indices), list(sparse.values))
            branches.append(q.Prefetch(limit=depth, query=q.Query.Nearest(lexical, using=SPARSE_VECTOR), filter=flt))
        fusion = q.Fusion.Rrf(k=RRF_K, weights=list(RRF_WEIGHTS[: len(branches)]))
        if not self.definitions:
            return self._call(
                "query",
                q.QueryRequest(limit=limit, prefetches=branches, query=fusion, with_payload=True, with_vector=[DENSE]),
            )
        # Every candidate of both searches with its article id alone; payloads and vectors are read
        # for the `limit` points kept (a built segment keeps them on disk).
        ids_only = q.PayloadSelector.Include(["id"])
        fused = self._call(
            "query",
            q.QueryRequest(
                limit=definition_depth(limit),
                prefetches=branches,
                query=fusion,
                with_payload=ids_only,
                with_vector=False,
            ),
        )
        defined = self._call(
            "query",
            q.QueryRequest(
                limit=definition_depth(limit),
                query=q.Query.Nearest(dense.tolist(), using=DEFINITION_VECTOR),
                filter=flt,
                score_threshold=score_threshold,
                params=definition_params(exact=self.exact),
                with_payload=ids_only,
                with_vector=False,
            ),
        )
        kept = with_definitions(fused, defined, _article, limit=limit)
        records = {str(r.id): r for r in self._call("retrieve", [p.id for p in kept], True, [DENSE])}
        return [
            Fused(p.id, p.score, dict(record.payload or {}), record.vector)
            for p in kept
            if (record := records.get(str(p.id))) is not None
        ]

    def warm(self) -> None:
        pass  # real indexes: nothing to build first

    def close(self) -> None:
        if not self._lease[0]:
            self._lease[0] = True
            self._folder.release()


def _article(point: Any) -> Any:
    return (point.payload or {}).get("id")


def _filter(where: PayloadFilter | None) -> Any:
    if where is None or not where.conditions():
        return None
    return q.Filter(must=[q.FieldCondition(key, match=q.MatchAny(list(values))) for key, values in where.conditions()])


def _selection(selection: ChunkSelection) -> Any:
    which = []
    if selection.from_index is not None:
        which.append(q.FieldCondition("chunk_index", range=q.RangeFloat(gte=selection.from_index)))
    if selection.indices:
        which.append(q.FieldCondition("chunk_index", match=q.MatchAny(list(selection.indices))))
    article = q.FieldCondition("id", match=q.MatchValue(selection.article_id))
    return q.Filter(must=[article], should=which or None)
