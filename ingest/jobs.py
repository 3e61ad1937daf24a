"""Bring a collection in line with a source, and check it: the jobs the command
line runs, as plain functions over a settings object.

- `run_ingest(settings, mode="run")`: write the new and changed articles of the
  source (unchanged ones cost nothing, so a stopped run resumes where it was);
  `mode="reindex"` also deletes the articles the source no longer has. Either
  builds a new collection and moves the alias when the settings changed
  (`ingest.state.rebuild`), from the live one's vectors when only the lexical
  settings did (`ingest.transfer.relexify`).
- `verify_collection`, `repair_manifest`: the manifest against the collection.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ingest import lexical
from ingest.chunking import Chunker
from ingest.crashpoints import crashpoint
from ingest.embedders import Embedder, make_embedder
from ingest.errors import RebuildError, SettingsError, StoreError
from ingest.pipeline.deadletters import DeadLetterFile
from ingest.pipeline.run import run_pipeline
from ingest.pipeline.summary import RunSummary
from ingest.progress import Progress
from ingest.settings import IngestSettings, StoreSettings
from ingest.sources import Source, open_source
from ingest.state.files import Checkpoint, open_manifest, remove_state, run_lock
from ingest.state.manifest import Manifest
from ingest.state.provenance import check_reindex, note_source, store_flags
from ingest.state.rebuild import Target, check_target, not_indexed, plan_target, switch
from ingest.state.reconcile import (
    DriftReport,
    RepairReport,
    delete_unseen,
    reconcile,
    repair,
    verify,
)
from ingest.store import Store, open_store
from ingest.transfer import lexical_only, relexify
from schemas import CollectionSpec

log = logging.getLogger(__name__)

RUN_MODES = ("run", "reindex")


def make_chunker(settings: IngestSettings, embedder: Embedder) -> Chunker:
    return Chunker(settings.chunking, max_tokens=embedder.spec.max_tokens, count_tokens=embedder.count_tokens)


def collection_spec(settings: IngestSettings, embedder: Embedder) -> CollectionSpec:
    sparse = lexical.default_spec() if settings.sparse == "bm25" else None
    definition = settings.definitions if sparse is not None and settings.definitions != "none" else None
    return CollectionSpec(
        model=embedder.spec, chunking=settings.chunking.to_dict(), sparse=sparse, definition=definition
    )


def run_ingest(
    settings: IngestSettings,
    *,
    embedder: Embedder | None = None,
    store: Store | None = None,
    source: Source | None = None,
    mode: str = "run",
    checkpoint: Checkpoint | None = None,
    in_place_only: bool = False,
    confirm: Callable[[str], bool] | None = None,
) -> RunSummary:
    """Bring the collection up to date with the source (see the module docstring).

    `embedder`, `store` (a connection, whatever collection it is bound to) and
    `source` are used as given, and left open, when passed: without them they are
    opened from `settings` (and closed). That is the seam `ingest.index` (the public
    API) and the tests use; the manifest still lives where `settings.store` says.

    `checkpoint` is called with the manifest every few minutes of writes (Modal copies it to a Volume);
    `in_place_only` refuses to build a new collection; `confirm(question)`: asked
    before a reindex deletes more than a small share of the articles (unless
    `settings.yes`; without either, such deletes are refused)."""
    if mode not in RUN_MODES:
        raise SettingsError(f"unknown mode {mode!r}: use one of {', '.join(RUN_MODES)}")
    started = time.perf_counter()
    source = source or open_source(settings.source_name, limit=settings.limit)
    own_store, own_embedder = store is None, embedder is None
    store = store or open_store(settings.store)
    try:
        store.resolve(settings.store.collection)  # a store out of reach fails now, not after the model's load
        embedder = embedder or make_embedder(settings.embedder)
        spec = collection_spec(settings, embedder)
        target = plan_target(store, settings.store.collection, spec)
        if in_place_only and target.rebuild and (live := lexical_only(store, target, spec)) is not None:
            # A scheduled reindex does not copy a whole corpus to change its BM25 settings or add
            # definitions: the live collection keeps those it was built with (queries follow them too).
            log.warning(
                "%s was built with other lexical settings (%s) than this version's (%s): kept for this reindex; "
                "run `python -m ingest` against it once to move to the new ones (a copy, no chunk embedded)",
                target.live,
                _lexical_settings(live),
                _lexical_settings(spec),
            )
            spec = live
            target = plan_target(store, settings.store.collection, spec)
        check_target(target, drop_old=settings.drop_old)
        if in_place_only and not target.in_place:
            raise RebuildError(
                f"{target.name!r} "
                + (f"leads to {target.live!r}, built with other settings" if target.live else "does not exist")
                + f": building {target.collection!r} takes the sharded "
                "load (modal run -m ingest.modal_app), not an incremental reindex"
            )
        with run_lock(settings.store, target.collection):
            seeded = relexify(store, target, spec, settings.store, progress=settings.progress, embedder=embedder)
            with open_manifest(settings.store, target.collection, spec.fingerprint, checkpoint=checkpoint) as manifest:
                summary = _update(
                    source,
                    settings,
                    embedder,
                    store,
                    target,
                    spec,
                    manifest,
                    mode,
                    (lambda question: True) if settings.yes else confirm,
                )
        if seeded:
            summary.seeded = (
                f"only the lexical settings or definitions changed: {seeded:,} points of {target.live} "
                "copied with new BM25 vectors, no chunk embedded again"
            )
    finally:
        if own_embedder and embedder is not None:
            embedder.close()
        if own_store:
            store.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _update(
    source: Source,
    settings: IngestSettings,
    embedder: Embedder,
    store: Store,
    target: Target,
    spec: CollectionSpec,
    manifest: Manifest,
    mode: str,
    confirm: Callable[[str], bool] | None,
) -> RunSummary:
    """Bring `target.collection` up to date with the source under its manifest: the
    pipeline, the deletes a reindex or a rebuild makes, and a rebuild's switch."""
    written = store.at(target.collection)
    if mode == "reindex":
        check_reindex(manifest, settings.source, target.name)
    if written.ensure_collection(spec, bulk_load=True):
        manifest.clear()  # a new collection holds nothing, whatever an old manifest says
    else:
        reconcile(written, manifest)
    note_source(manifest, settings.source_name)
    crashpoint("after-collection")
    deletes = settings.limit is None and (mode == "reindex" or target.rebuild)
    log.info(
        "%s %s into %s%s with %s",
        "reindexing" if mode == "reindex" else "ingesting",
        source.name,
        target.collection,
        f" (rebuilding {target.name})" if target.rebuild else "",
        embedder.spec.name,
    )
    summary = run_pipeline(
        source,
        chunker=make_chunker(settings, embedder),
        embedder=embedder,
        store=written,
        dead_letters=DeadLetterFile(settings.dead_letter),
        window=settings.window,
        progress=Progress(source.total, enabled=settings.progress),
        manifest=manifest,
        track_seen=deletes,
        definitions=spec.definition is not None,
    )
    if deletes and summary.unreadable:
        log.warning(
            "%d rows of the source could not be read (see %s): no article is deleted this run, "
            "since theirs may be among them; fix those rows and reindex again",
            summary.unreadable,
            settings.dead_letter,
        )
    elif deletes:
        articles, points = delete_unseen(
            written, manifest, max_share=settings.max_delete_share, confirm=confirm, source=settings.source_name
        )
        note_source(manifest, settings.source_name, only=True)  # the collection mirrors it alone now
        summary.deleted += articles
        summary.points_deleted += points
    started = time.perf_counter()
    indexed = written.finish_bulk_load(wait_seconds=0.0 if target.in_place else settings.index_wait)
    summary.index_seconds = time.perf_counter() - started
    summary.collection = target.collection
    summary.collection_points = written.count()
    if not target.in_place:
        summary.alias = _go_live(store, target, embedder, settings, indexed)
    return summary


def _lexical_settings(spec: CollectionSpec) -> str:
    sparse = spec.sparse
    return (
        f"BM25 k1 {sparse.k1:g}, b {sparse.b:g}, titles {'in' if sparse.include_title else 'out'}; "
        f"definitions {spec.definition or 'none'}"
    )


def _go_live(store: Store, target: Target, embedder: Embedder, settings: IngestSettings, indexed: bool) -> str:
    if settings.limit is not None and target.live is not None:
        line = (
            f"{target.name} still leads to {target.live}: a run with --limit builds "
            f"{target.collection} partly; run without it to switch"
        )
        log.warning("%s", line)
        return line
    if not indexed:  # searches over a graph still being built may time out: switch once it is done
        line = not_indexed(target, settings.index_wait)
        log.warning("%s", line)
        return line
    return switch(
        store,
        target,
        embedder,
        drop_old=settings.drop_old,
        forget=lambda dropped: remove_state(settings.store, dropped),
    )


def _physical(store: Store, settings: StoreSettings) -> Store:
    collection = store.resolve(settings.collection).collection
    if collection is None:
        raise StoreError(f"no collection or alias named {settings.collection!r} at {settings.location}")
    return store.at(collection)


def verify_collection(settings: StoreSettings, *, store: Store | None = None) -> DriftReport:
    """Compare the manifest with the collection the name leads to (changes nothing
    in the collection; a missing manifest reads as empty)."""
    own = store is None
    store = store or open_store(settings)
    try:
        physical = _physical(store, settings)
        spec = physical.read_spec()
        with open_manifest(settings, physical.collection, spec.fingerprint if spec else "") as manifest:
            return verify(physical, manifest, flags=store_flags(settings))
    finally:
        if own:
            store.close()


def repair_manifest(settings: StoreSettings, *, store: Store | None = None) -> RepairReport:
    """Rebuild the manifest of the collection the name leads to from its points."""
    own = store is None
    store = store or open_store(settings)
    try:
        physical = _physical(store, settings)
        spec = physical.read_spec()
        with (
            run_lock(settings, physical.collection),
            open_manifest(settings, physical.collection, spec.fingerprint if spec else "") as manifest,
        ):
            return repair(physical, manifest)
    finally:
        if own:
            store.close()
