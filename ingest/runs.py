"""Runs on Modal, in plain Python: `ingest.modal_app` only wraps these, so they run
(and are tested) without Modal. Only the standard library is imported at the top.

- `ShardRecords`: a folder on the Volume per run of the sharded load, one JSON file
  per finished shard, written once its points are all acknowledged: its
  `ShardResult` and its articles' manifest rows. A driver started again skips the
  shards recorded there; at the end the records become the collection's manifest.
- `prepare_load` / `finish_load`: before and after the shards. They pick the
  collection to build (`ingest.rebuild`), and at the end check it with a smoke
  query and move the alias onto it.
- `reindex_snapshot`: the scheduled incremental reindex (one container), its
  manifest copied from the Volume and checkpointed back (`VolumeState`).
- `newest_snapshot`: which of the configured dumps to reindex against.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ingest.errors import RebuildError, SettingsError
from ingest.manifest import Manifest, ManifestRow

if TYPE_CHECKING:
    from ingest.pipeline import RunSummary
    from ingest.settings import IngestSettings
    from ingest.worker import ShardResult

log = logging.getLogger(__name__)

_SNAPSHOT_DATE = re.compile(r"^(\d{8})")


def newest_snapshot(configs: Sequence[str]) -> str:
    """The configured dump with the latest date (`20231101.en` is 2023-11-01)."""
    dated = [(m.group(1), c) for c in configs if (m := _SNAPSHOT_DATE.match(c))]
    if not dated:
        raise SettingsError(f"no snapshot in {list(configs)!r} starts with a date (YYYYMMDD), like 20231101.en")
    return max(dated)[1]


def run_key(config: str, rows: int, shard_size: int) -> str:
    """Names a sharded load: the same command started again resumes it."""
    return f"{config}-{rows}-{shard_size}"


# -- shard records ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShardRecords:
    folder: Path

    def path(self, start: int, stop: int) -> Path:
        return self.folder / f"{start:012d}-{stop:012d}.json"

    def write(self, result: "ShardResult", rows: Iterable[ManifestRow]) -> Path:
        """Record a finished shard (atomically: a reader sees all of it or nothing)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {"result": asdict(result),
                "articles": [[r.article_id, r.article_hash, r.chunk_count, r.rejected] for r in rows]}
        path = self.path(result.start, result.stop)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, path)
        return path

    def _records(self) -> Iterable[dict[str, Any]]:
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else ():
            try:
                yield json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:  # torn by a crash mid-copy: the shard runs again
                log.warning("ignoring the unreadable shard record %s: %s", path, exc)

    def finished(self) -> list["ShardResult"]:
        from ingest.worker import ShardResult

        return [ShardResult(**record["result"]) for record in self._records()]

    def merge_into(self, manifest: Manifest) -> int:
        """Write every recorded article into `manifest`; returns how many."""
        merged = 0
        for record in self._records():
            rows = [ManifestRow(a, h, n, r) for a, h, n, r in record["articles"]]
            manifest.complete(rows)
            merged += len(rows)
        return merged

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def ingest_recorded_shard(dataset_path: str, start: int, stop: int, *, settings: "IngestSettings", tei_url: str,
                          records: ShardRecords | None) -> "ShardResult":
    """`ingest.worker.ingest_shard`, then its record (only once it all landed)."""
    from ingest.worker import ingest_shard

    manifest = Manifest.memory()
    try:
        result = ingest_shard(dataset_path, start, stop, settings=settings, tei_url=tei_url, manifest=manifest)
        if records is not None:
            records.write(result, manifest.rows())
    finally:
        manifest.close()
    return result


# -- the state on a Volume ---------------------------------------------------------------------
@dataclass(slots=True)
class VolumeState:
    """Manifests kept on a Volume, worked on as local copies: SQLite wants a local
    disk, and a Volume shows writes elsewhere only once committed. `pull` copies
    them in; `checkpoint` (the manifest's callback) copies one back and commits;
    `push_removals` deletes from the Volume those a run dropped."""

    volume_dir: Path
    local_dir: Path
    commit: Callable[[], None]
    pulled: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.volume_dir, self.local_dir = Path(self.volume_dir), Path(self.local_dir)

    def pull(self) -> None:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        for path in self.volume_dir.glob("*.sqlite") if self.volume_dir.is_dir() else ():
            shutil.copyfile(path, self.local_dir / path.name)
            self.pulled.add(path.name)

    def checkpoint(self, manifest: Manifest) -> None:
        manifest.backup_to(self.volume_dir / Path(manifest.path).name)
        self.commit()

    def push_removals(self) -> None:
        gone = [name for name in self.pulled if not (self.local_dir / name).exists()]
        for name in gone:
            (self.volume_dir / name).unlink(missing_ok=True)
        if gone:
            self.commit()


# -- the sharded load: before and after -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What `prepare_load` decided; travels back to the driver (pickled)."""

    name: str
    collection: str  # the physical collection the shards write
    live: str | None
    created: bool
    records: str  # the folder of this run's shard records
    finished: list = field(default_factory=list)  # ShardResults recorded by an earlier attempt


def prepare_load(settings: "IngestSettings", tei_url: str, *, records_root: str, key: str,
                 fresh: bool = False) -> LoadPlan:
    """Pick the collection the shards build (never the live one: a sharded load
    rewrites every article and could not delete what the snapshot lacks; the
    incremental `reindex` updates a live collection) and create it for a bulk load
    (payload indexes first, HNSW deferred). A collection left by anything but an
    earlier attempt of this very run (same key), or any with `fresh`, is dropped
    and started over."""
    from ingest.embedders.tei import TEIEmbedder
    from ingest.jobs import client_for, collection_spec
    from ingest.rebuild import check_target, plan_target
    from ingest.store import QdrantStore

    embedder = TEIEmbedder(tei_url, model_name=settings.embedder.model,
                           query_instruction=settings.embedder.query_instruction)
    client = client_for(settings.store)
    try:
        spec = collection_spec(settings, embedder)
        target = plan_target(client, settings.store.collection, spec)
        check_target(target, drop_old=settings.drop_old)
        if target.in_place:
            raise RebuildError(
                f"{target.name!r} already leads to {target.collection!r}, built with these settings: update it "
                "with the incremental reindex (modal run -m ingest.modal_app::reindex); a sharded load builds "
                "collections that are not live yet")
        records = ShardRecords(Path(records_root) / target.collection / key)
        store = QdrantStore(client, target.collection)
        exists = client.collection_exists(target.collection)
        finished = records.finished() if exists and not fresh else []
        if exists and not finished:
            log.warning("dropping %s: not live, and not left by an earlier attempt of this run", target.collection)
            store.drop()
        if not finished:
            records.clear()
        created = store.ensure_collection(spec, bulk_load=True)
        return LoadPlan(target.name, target.collection, target.live, created, str(records.folder), finished)
    finally:
        embedder.close()
        client.close()


def finish_load(settings: "IngestSettings", tei_url: str, plan: LoadPlan, *, state_dir: str | None,
                checkpoint: Callable[[Manifest], None] | None = None, partial: bool = False,
                wait_seconds: float = 0.0) -> str:
    """After the last shard: the records become the manifest, the HNSW graph is
    built, a smoke query checks the collection and the alias moves onto it (not
    after a `partial` load while another collection is live). Returns a report line."""
    from ingest.embedders.tei import TEIEmbedder
    from ingest.jobs import client_for, collection_spec, open_manifest, remove_state
    from ingest.rebuild import Target, go_live, smoke_check
    from ingest.store import QdrantStore, resolve

    store_settings = replace(settings.store, state_dir=state_dir)
    embedder = TEIEmbedder(tei_url, model_name=settings.embedder.model,
                           query_instruction=settings.embedder.query_instruction)
    client = client_for(store_settings)
    try:
        store = QdrantStore(client, plan.collection)
        spec = collection_spec(settings, embedder)
        with open_manifest(store_settings, plan.collection, spec.fingerprint, checkpoint=checkpoint) as manifest:
            manifest.clear()
            merged = ShardRecords(Path(plan.records)).merge_into(manifest)
        if store.hnsw_m() == 0:
            store.finish_bulk_load(wait_seconds=wait_seconds)
        now = resolve(client, plan.name)  # where the name leads at the end, whatever it was at the start
        target = Target(plan.name, plan.collection, now.collection,
                        legacy=now.collection is not None and not now.is_alias)
        line = f"manifest of {plan.collection}: {merged:,} articles"
        if target.in_place:
            return line + f"; {plan.name} already leads to it"
        if partial and target.live is not None:
            return line + f"; {plan.name} still leads to {target.live} (a --limit load does not switch)"
        smoke_check(store, embedder)
        dropped = go_live(client, target, drop_old=settings.drop_old)
        if dropped:
            remove_state(store_settings, dropped)
        return line + f"; {plan.name} now leads to {plan.collection}" + (
            f" (was {target.live}{', dropped' if dropped else ', kept'})" if target.live else "")
    finally:
        embedder.close()
        client.close()


# -- the scheduled reindex ------------------------------------------------------------------------
def reindex_snapshot(dataset_path: str, settings: "IngestSettings", *, state: VolumeState | None = None,
                     embedder: Any = None) -> "RunSummary":
    """The incremental reindex of a live collection against the dump saved at
    `dataset_path`. Its manifest lives on the Volume (`state`); it refuses to
    build a whole collection on one container (a first build, or other settings:
    that is the sharded load's work)."""
    from ingest.jobs import run_ingest

    settings = replace(settings, source=dataset_path)
    if state is not None:
        state.pull()
        settings = replace(settings, store=replace(settings.store, state_dir=str(state.local_dir)))
    summary = run_ingest(settings, embedder=embedder, mode="reindex", in_place_only=True,
                         checkpoint=state.checkpoint if state is not None else None)
    if state is not None:
        state.push_removals()
    return summary
