"""The jobs the command line runs, as plain functions over a settings object.

- `run_ingest(settings, mode="run")`: write the new and changed articles of the
  source (unchanged ones cost nothing, so a stopped run resumes where it was);
  `mode="reindex"` also deletes the articles the source no longer has. Either
  builds a new collection and moves the alias when the settings changed
  (`ingest.rebuild`).
- `verify_collection`, `repair_manifest`: the manifest against the collection.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from qdrant_client import QdrantClient

from ingest import lexical
from ingest.chunking import Chunker
from ingest.crashpoints import crashpoint
from ingest.deadletter import DeadLetterFile
from ingest.embedders import Embedder, make_embedder
from ingest.errors import RebuildError, SettingsError, StoreError
from ingest.manifest import Manifest, RunLock, default_state_dir, manifest_path
from ingest.pipeline import RunSummary, run_pipeline
from ingest.progress import Progress
from ingest.rebuild import check_target, go_live, plan_target, smoke_check
from ingest.reconcile import DriftReport, RepairReport, delete_unseen, reconcile, repair, verify
from ingest.settings import IngestSettings, StoreSettings
from ingest.sources import open_source
from ingest.store import QdrantStore, open_client, resolve
from schemas import CollectionSpec

log = logging.getLogger(__name__)

MODES = ("run", "reindex")
Checkpoint = Callable[[Manifest], None]


def client_for(settings: StoreSettings) -> QdrantClient:
    return open_client(
        path=settings.qdrant_path,
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key,
        prefer_grpc=settings.prefer_grpc,
        timeout=settings.timeout,
    )


def open_store(settings: StoreSettings) -> QdrantStore:
    """The collection `settings.collection` leads to now (through its alias, if any)."""
    client = client_for(settings)
    collection = resolve(client, settings.collection).collection
    return QdrantStore(client, collection or settings.collection)


def make_chunker(settings: IngestSettings, embedder: Embedder) -> Chunker:
    return Chunker(settings.chunking, max_tokens=embedder.spec.max_tokens, count_tokens=embedder.count_tokens)


def collection_spec(settings: IngestSettings, embedder: Embedder) -> CollectionSpec:
    sparse = lexical.default_spec() if settings.sparse == "bm25" else None
    return CollectionSpec(model=embedder.spec, chunking=settings.chunking.to_dict(), sparse=sparse)


# -- state: one manifest per physical collection ------------------------------------------
def state_dir(settings: StoreSettings) -> Path | None:
    if settings.state_dir:
        return Path(settings.state_dir)
    return default_state_dir(settings.qdrant_path, settings.qdrant_url)


def open_manifest(settings: StoreSettings, collection: str, fingerprint: str, *,
                  checkpoint: Checkpoint | None = None) -> Manifest:
    folder = state_dir(settings)
    if folder is None:
        return Manifest.memory()
    store = settings.qdrant_url or str(Path(settings.qdrant_path).resolve())
    return Manifest.open(manifest_path(folder, collection), collection=collection, fingerprint=fingerprint,
                         store=store, checkpoint=checkpoint)


def run_lock(settings: StoreSettings, collection: str) -> RunLock:
    folder = state_dir(settings)
    return RunLock(folder / f"{collection}.lock" if folder is not None else None)


def remove_state(settings: StoreSettings, collection: str) -> None:
    """Forget the manifest of a collection that was dropped."""
    folder = state_dir(settings)
    if folder is None:
        return
    base = manifest_path(folder, collection)
    for path in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm"),
                 folder / f"{collection}.lock"):
        path.unlink(missing_ok=True)


# -- jobs ------------------------------------------------------------------------------------
def run_ingest(settings: IngestSettings, *, embedder: Embedder | None = None, client: QdrantClient | None = None,
               mode: str = "run", checkpoint: Checkpoint | None = None, in_place_only: bool = False) -> RunSummary:
    """Bring the collection up to date with the source (see the module docstring).

    `embedder` and `client` are used as given (and left open) when passed;
    `checkpoint` is called with the manifest every few minutes of writes (Modal
    copies it to a Volume); `in_place_only` refuses to build a new collection."""
    if mode not in MODES:
        raise SettingsError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    started = time.perf_counter()
    source = open_source(settings.source, limit=settings.limit)
    own_client, own_embedder = client is None, embedder is None
    client = client or client_for(settings.store)
    try:
        embedder = embedder or make_embedder(settings.embedder)
        spec = collection_spec(settings, embedder)
        target = plan_target(client, settings.store.collection, spec)
        check_target(target, drop_old=settings.drop_old)
        if in_place_only and not target.in_place:
            raise RebuildError(
                f"{target.name!r} " + (f"leads to {target.live!r}, built with other settings" if target.live else
                                      "does not exist") + f": building {target.collection!r} takes the sharded "
                "load (modal run -m ingest.modal_app), not an incremental reindex")
        store = QdrantStore(client, target.collection)
        with run_lock(settings.store, target.collection), \
                open_manifest(settings.store, target.collection, spec.fingerprint, checkpoint=checkpoint) as manifest:
            if store.ensure_collection(spec, bulk_load=True):
                manifest.clear()  # a new collection holds nothing, whatever an old manifest says
            else:
                reconcile(store, manifest)
            crashpoint("after-collection")
            deletes = settings.limit is None and (mode == "reindex" or target.rebuild)
            log.info("%s %s into %s%s with %s", "reindexing" if mode == "reindex" else "ingesting", source.name,
                     target.collection, f" (rebuilding {target.name})" if target.rebuild else "", embedder.spec.name)
            summary = run_pipeline(
                source,
                chunker=make_chunker(settings, embedder),
                embedder=embedder,
                store=store,
                dead_letters=DeadLetterFile(settings.dead_letter),
                window=settings.window,
                progress=Progress(source.total, enabled=settings.progress),
                manifest=manifest,
                track_seen=deletes,
            )
            if deletes:
                delete_unseen(store, manifest, summary, max_share=settings.max_delete_share)
            if store.hnsw_m() == 0:
                store.finish_bulk_load()
            summary.extra["collection"] = target.collection
            summary.extra["collection_points"] = store.count()
            if not target.in_place:
                _go_live(client, target, store, embedder, settings, summary)
    finally:
        if own_embedder and embedder is not None:
            embedder.close()
        if own_client:
            client.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _go_live(client: QdrantClient, target, store: QdrantStore, embedder: Embedder, settings: IngestSettings,
             summary: RunSummary) -> None:
    if settings.limit is not None and target.live is not None:
        summary.extra["alias"] = (f"{target.name} still leads to {target.live}: a run with --limit builds "
                                  f"{target.collection} partly; run without it to switch")
        log.warning("%s", summary.extra["alias"])
        return
    smoke_check(store, embedder)
    dropped = go_live(client, target, drop_old=settings.drop_old)
    if dropped:
        remove_state(settings.store, dropped)
    summary.extra["alias"] = f"{target.name} now leads to {target.collection}" + (
        f" (was {target.live}{', dropped' if dropped else ', kept'})" if target.live else "")


def _physical(client: QdrantClient, settings: StoreSettings) -> QdrantStore:
    collection = resolve(client, settings.collection).collection
    if collection is None:
        raise StoreError(f"no collection or alias named {settings.collection!r} at "
                         f"{settings.qdrant_url or settings.qdrant_path}")
    return QdrantStore(client, collection)


def verify_collection(settings: StoreSettings, *, client: QdrantClient | None = None) -> DriftReport:
    """Compare the manifest with the collection the name leads to (changes nothing
    in the collection; a missing manifest reads as empty)."""
    own = client is None
    client = client or client_for(settings)
    try:
        store = _physical(client, settings)
        spec = store.read_spec()
        with open_manifest(settings, store.collection, spec.fingerprint if spec else "") as manifest:
            return verify(store, manifest)
    finally:
        if own:
            client.close()


def repair_manifest(settings: StoreSettings, *, client: QdrantClient | None = None) -> RepairReport:
    """Rebuild the manifest of the collection the name leads to from its points."""
    own = client is None
    client = client or client_for(settings)
    try:
        store = _physical(client, settings)
        spec = store.read_spec()
        with run_lock(settings, store.collection), \
                open_manifest(settings, store.collection, spec.fingerprint if spec else "") as manifest:
            return repair(store, manifest)
    finally:
        if own:
            client.close()
