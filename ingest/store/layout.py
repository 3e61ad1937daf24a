"""How a collection on a Qdrant server is laid out, created and indexed after a bulk
load: functions over a `QdrantClient`, used by `ingest.store.server`.

A bulk load follows Qdrant's guidance as of 1.19 (qdrant.tech "Bulk Upload" and
"Bulk Uploading Data to Qdrant", 2026):

- every payload index a filter uses is created before the first point (Qdrant Cloud
  turns strict mode on for new collections, and strict mode refuses a filter on a key
  without an index: `lib/collection/src/operations/verification/mod.rs:114-161` at
  v1.19.0): `id`, `title` and `url` for search, `chunk_index` for the reindex's
  stale-chunk deletes (a Range and a MatchAny of integers, both served by one integer
  index: `problems/unindexed_field.rs:584-590`);
- "if nothing needs to search the collection until the upload finishes, defer
  indexing: create the collection with `indexing_threshold` set to 0, upload, and
  then set it back". Nothing searches a collection a sharded load builds until its
  alias moves, so it is created so, with the graph's `m` as it will stay (`m=0`, the
  older advice, still defers the graph but leaves the optimizer rewriting segments
  during the load). Continuous indexing with `prevent_unoptimized` (1.17.1,
  experimental) is for collections searched while they are written: it makes
  `wait=true` writes wait for optimization, which would stall a load no one reads
  yet. The incremental reindex writes into the live collection with indexing on, as
  Qdrant's defaults have it: its changes are a small share of the collection;
- the index is done when the collection is green and the optimizer idle
  (`/collections/{name}/optimizations`, 1.17), and only then does an alias move.

After a restart a collection with optimizations pending reports grey and starts them
only when an update arrives (`lib/collection/src/shards/local_shard/mod.rs:1207-1221`):
the wait sends an empty optimizer update then, as Qdrant's docs say to. On 1.19 and
later the storage tiers are given as `memory` (cold, cached, pinned), which replaces
the deprecated `on_disk`/`always_ram` flags (`lib/segment/src/types.rs:1837-1927`);
older servers get the flags.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from qdrant_client import QdrantClient, models

from ingest.definitions import DEFINITION_VECTOR
from ingest.lexical import SPARSE_VECTOR
from ingest.settings import ServerLayout
from ingest.store.base import FILTER_FIELDS, INT8_QUANTILE
from ingest.store.points import DENSE_VECTOR
from ingest.store.retries import retry_transient
from schemas import CollectionSpec

log = logging.getLogger(__name__)

HNSW_M = 16
INDEXING_THRESHOLD = 10_000  # KB: Qdrant's default, restored when a bulk load ends
MEMORY_TIERS = (1, 19)  # the server version from which storage tiers are `memory` (cold, cached, pinned)
GREY_NUDGE_SECONDS = 30.0  # how often the wait sends an empty optimizer update to a grey collection
# Scalar int8 quantization kept in RAM: a quarter of float32's memory (the quantile: ingest.store.base).
INT8 = models.ScalarQuantization(
    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=INT8_QUANTILE, always_ram=True)
)
INT8_PINNED = models.ScalarQuantization(
    scalar=models.ScalarQuantizationConfig(
        type=models.ScalarType.INT8, quantile=INT8_QUANTILE, memory=models.Memory.PINNED
    )
)
# Every key a filter uses, indexed before the load (building an index over a loaded collection is slower).
PAYLOAD_INDEXES = {
    **{name: models.PayloadSchemaType.KEYWORD for name in FILTER_FIELDS},
    "chunk_index": models.PayloadSchemaType.INTEGER,
}


def create_collection(
    client: QdrantClient, name: str, spec: CollectionSpec, layout: ServerLayout, *, bulk_load: bool, tiers: bool
) -> None:
    """The collection for `spec`, then its payload indexes. Quantized: the float32
    originals on disk, read only to rescore the best candidates, an int8 copy in RAM;
    the payloads on disk, read for the hits only. `tiers`: the server takes `memory`."""
    quantized = layout.quantization == "int8"
    originals = ({"memory": models.Memory.COLD} if tiers else {"on_disk": True}) if quantized else {}
    payloads: dict[str, Any] = (
        {"payload": models.PayloadStorageParams(memory=models.Memory.COLD)} if tiers else {"on_disk_payload": True}
    )
    client.create_collection(
        name,
        vectors_config=dense_vectors(
            spec, models.VectorParams(size=spec.dimension, distance=models.Distance.COSINE, **originals)
        ),
        # IDF over the whole collection, kept current by Qdrant as points come and go
        sparse_vectors_config={SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}
        if spec.sparse
        else None,
        hnsw_config=models.HnswConfigDiff(m=HNSW_M),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0) if bulk_load else None,
        quantization_config=(INT8_PINNED if tiers else INT8) if quantized else None,
        shard_number=layout.shards,
        replication_factor=layout.replicas,
        write_consistency_factor=layout.write_consistency,
        metadata=spec.to_metadata(),
        **payloads,
    )
    add_payload_indexes(client, name, have=set())


def dense_vectors(spec: CollectionSpec, params: models.VectorParams) -> Any:
    """The dense vectors' configuration: the chunks' in Qdrant's unnamed slot (`""`), and
    beside it the definitions' (`ingest.definitions`) where the spec has them, alike."""
    if spec.definition is None:
        return params
    return {DENSE_VECTOR: params, DEFINITION_VECTOR: params}


def add_payload_indexes(client: QdrantClient, name: str, *, have: set[str]) -> None:
    """The payload indexes of `PAYLOAD_INDEXES` not in `have` (a collection of an earlier
    version lacks `chunk_index`: a server in strict mode would refuse its reindex)."""
    for field_name, schema in PAYLOAD_INDEXES.items():
        if field_name not in have:
            if have:
                log.info("adding the payload index %s to %s", field_name, name)
            _create_payload_index(client, name, field_name, schema)


@retry_transient  # an index write counts against strict mode's write rate limit, as points do
def _create_payload_index(client: QdrantClient, name: str, field_name: str, schema: Any) -> None:
    client.create_payload_index(name, field_name, field_schema=schema, wait=True)


def deferred(client: QdrantClient, name: str) -> bool:
    """Indexing is off, as a bulk load leaves it (m=0 was how earlier versions deferred)."""
    config = client.get_collection(name).config
    return config.hnsw_config.m == 0 or config.optimizer_config.indexing_threshold == 0


@retry_transient
def resume_indexing(client: QdrantClient, name: str) -> None:
    client.update_collection(
        name,
        hnsw_config=models.HnswConfigDiff(m=HNSW_M),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=INDEXING_THRESHOLD),
    )


def wait_until_indexed(client: QdrantClient, name: str, *, wait_seconds: float, poll_seconds: float = 2.0) -> bool:
    """Wait up to `wait_seconds` for the collection to be green with its optimizer idle;
    a grey one (a restarted server that has not resumed) is sent an empty optimizer
    update every `GREY_NUDGE_SECONDS`, which resumes it."""
    deadline, nudged = time.monotonic() + wait_seconds, float("-inf")
    while True:
        status = client.get_collection(name).status
        if status == models.CollectionStatus.GREEN and optimizer_idle(client, name):
            return True
        if status == models.CollectionStatus.GREY and time.monotonic() - nudged >= GREY_NUDGE_SECONDS:
            log.info("collection %s is grey (optimizations paused since a restart): resuming them", name)
            client.update_collection(name, optimizers_config=models.OptimizersConfigDiff())
            nudged = time.monotonic()
        if time.monotonic() >= deadline:
            if wait_seconds > 0:
                log.warning("collection %s is still indexing after %.0f s", name, wait_seconds)
            return False
        time.sleep(min(poll_seconds, max(deadline - time.monotonic(), 0.0)))


def optimizer_idle(client: QdrantClient, name: str) -> bool:
    """Nothing queued or running for the optimizer, where the server says (Qdrant 1.17+)."""
    try:
        state: Any = client.get_optimizations(name)  # REST only, also with prefer_grpc
    except Exception:  # noqa: BLE001 - an older server, or local mode: green is all it says
        return True
    queued = getattr(getattr(state, "summary", None), "queued_optimizations", 0) or 0
    return not queued and not (getattr(state, "running", None) or [])
