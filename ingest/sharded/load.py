"""Before and after the shards of a sharded load: `prepare_load` picks the
collection to build (`ingest.state.rebuild`) and creates it for a bulk load;
`finish_load` turns the shard records into its manifest, builds its graph, checks
it with a smoke query and moves the alias onto it.

A trial (a `--limit` load) is built under a name of its own (`wikipedia-trial`):
it never becomes what the live name leads to, so the full load after it starts
cleanly, and each trial replaces the last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ingest.embedders import make_embedder
from ingest.errors import RebuildError
from ingest.jobs import collection_spec
from ingest.settings import IngestSettings
from ingest.sharded.records import ShardRecords
from ingest.state.files import Checkpoint, open_manifest, remove_state
from ingest.state.rebuild import Target, check_target, not_indexed, plan_target, switch
from ingest.store import Store, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What `prepare_load` decided; travels back to the driver (pickled)."""

    name: str
    collection: str  # the physical collection the shards write
    live: str | None
    created: bool
    records: str  # the folder of this run's shard records
    finished: list = field(default_factory=list)  # ShardResults recorded by an earlier attempt


def prepare_load(
    settings: IngestSettings,
    *,
    records_root: str,
    key: str,
    fresh: bool = False,
    trial: bool = False,
    store: Store | None = None,
) -> LoadPlan:
    """Pick the collection the shards build (never the live one: a sharded load
    rewrites every article and could not delete what the snapshot lacks; the
    incremental `reindex` updates a live collection) and create it for a bulk load
    (payload indexes first, indexing deferred). A collection left by anything but an
    earlier attempt of this very run (same key), or any with `fresh`, is dropped
    and started over. A `trial` (the name is the trial's own) may rebuild what its
    name leads to. `store`: a connection to use (and leave open)."""
    embedder = make_embedder(settings.embedder)
    own_store = store is None
    store = store or open_store(settings.store)
    try:
        spec = collection_spec(settings, embedder)
        target = plan_target(store, settings.store.collection, spec)
        check_target(target, drop_old=settings.drop_old)
        if target.in_place and not trial:
            raise RebuildError(
                f"{target.name!r} already leads to {target.collection!r}, built with these settings: update it "
                "with the incremental reindex (modal run -m ingest.modal_app::reindex); a sharded load builds "
                "collections that are not live yet (if it holds a --limit trial of an earlier version, delete "
                f"the alias {target.name!r} first: trials now live under their own name)"
            )
        records = ShardRecords(Path(records_root) / target.collection / key)
        built = store.at(target.collection)
        exists = built.exists()
        finished = records.finished() if exists and not fresh else []
        if exists and not finished:
            log.warning("dropping %s: not live, and not left by an earlier attempt of this run", target.collection)
            built.drop()
        if not finished:
            records.clear()
        created = built.ensure_collection(spec, bulk_load=True)
        return LoadPlan(target.name, target.collection, target.live, created, str(records.folder), finished)
    finally:
        embedder.close()
        if own_store:
            store.close()


def finish_load(
    settings: IngestSettings,
    plan: LoadPlan,
    *,
    state_dir: str | None,
    checkpoint: Checkpoint | None = None,
    wait_seconds: float = 0.0,
    store: Store | None = None,
    forget: Callable[[str], None] | None = None,
) -> str:
    """After the last shard: the records become the manifest, the HNSW graph is
    built, a smoke query checks the collection and the alias moves onto it. The
    alias moves only once the server reports the collection indexed, within
    `wait_seconds`; else a `RebuildError` says to run again. A collection the switch
    dropped (`drop_old`) has its manifest removed, and `forget` is told its name (the
    Modal app removes the Volume's copy too). Returns a report line."""
    store_settings = replace(settings.store, state_dir=state_dir)
    embedder = make_embedder(settings.embedder)
    own_store = store is None
    store = store or open_store(store_settings)

    def dropped(collection: str) -> None:
        remove_state(store_settings, collection)
        if forget is not None:
            forget(collection)

    try:
        built = store.at(plan.collection)
        spec = collection_spec(settings, embedder)
        with open_manifest(store_settings, plan.collection, spec.fingerprint, checkpoint=checkpoint) as manifest:
            manifest.clear()
            merged = ShardRecords(Path(plan.records)).merge_into(manifest)
        indexed = built.finish_bulk_load(wait_seconds=wait_seconds)
        now = store.resolve(plan.name)  # where the name leads at the end, whatever it was at the start
        target = Target(
            plan.name, plan.collection, now.collection, unaliased=now.collection is not None and not now.is_alias
        )
        line = f"manifest of {plan.collection}: {merged:,} articles"
        if target.in_place:
            return line + f"; {plan.name} already leads to it"
        if not indexed:
            raise RebuildError(not_indexed(target, wait_seconds))
        return line + "; " + switch(store, target, embedder, drop_old=settings.drop_old, forget=dropped)
    finally:
        embedder.close()
        if own_store:
            store.close()
