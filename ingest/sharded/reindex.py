"""The scheduled incremental reindex, in plain Python: which dump to reindex against
(`newest_snapshot`, `SnapshotLog`), the live collection's own settings
(`live_layout`), the manifests kept on a Volume (`VolumeState`), one reindex at a
time across containers (`RunLock`), and the reindex itself (`reindex_snapshot`).

The manifest of the whole corpus is about half a gigabyte of SQLite; a Volume shows
a write elsewhere only once committed. So a run works on a local copy and checkpoints
what changed since the last checkpoint as a small journal beside the last whole copy
(a week's reindex changes a few percent of the rows); the next run's `pull` applies
the journals to the whole copy, and a finished run writes one whole copy again and
drops its journals. Only the manifest of the collection being reindexed is pulled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ingest.embedders import Embedder
from ingest.errors import RebuildError, RunLockedError, SettingsError
from ingest.jobs import run_ingest
from ingest.pipeline.summary import RunSummary
from ingest.settings import IngestSettings, StoreSettings
from ingest.state.manifest import Manifest
from ingest.store import open_store

log = logging.getLogger(__name__)

_SNAPSHOT_DATE = re.compile(r"^(\d{8})")


def newest_snapshot(configs: Sequence[str]) -> str:
    """The configured dump with the latest date (`20231101.en` is 2023-11-01)."""
    dated = [(m.group(1), c) for c in configs if (m := _SNAPSHOT_DATE.match(c))]
    if not dated:
        raise SettingsError(f"no snapshot in {list(configs)!r} starts with a date (YYYYMMDD), like 20231101.en")
    return max(dated)[1]


def holds(held: str | None, snapshot: str) -> bool:
    """A collection brought up to date with the dump `held` needs nothing from
    `snapshot` when that one is no newer."""
    if held is None:
        return False
    dates = [m.group(1) if (m := _SNAPSHOT_DATE.match(c)) else "" for c in (held, snapshot)]
    return held == snapshot or (all(dates) and dates[0] >= dates[1])


def live_layout(settings: StoreSettings) -> tuple[str, dict[str, Any]]:
    """The physical collection the name leads to, and how it was built: its chunker's
    settings and "sparse" ("bm25" or "none"), from its build record, so that a
    reindex chunks as the load did whatever flags that load was given."""
    store = open_store(settings)
    try:
        live = store.resolve(settings.collection).collection
        spec = store.at(live).read_spec() if live else None
    finally:
        store.close()
    if live is None or spec is None:
        raise RebuildError(
            f"nothing by the name {settings.collection!r} was built by this tool at "
            f"{settings.location}: build it first with the sharded load (modal run -m ingest.modal_app)"
        )
    return live, {**spec.chunking, "sparse": "bm25" if spec.sparse else "none"}


# -- which dump each collection holds ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SnapshotLog:
    """A JSON file on the state Volume: the dump each physical collection was last
    brought up to date with (by the sharded load or a reindex)."""

    path: Path

    def read(self) -> dict[str, str]:
        try:
            return json.loads(Path(self.path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def get(self, collection: str) -> str | None:
        return self.read().get(collection)

    def record(self, collection: str, config: str) -> None:
        entries = {**self.read(), collection: config}
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, path)

    def forget(self, collection: str) -> None:
        entries = self.read()
        if entries.pop(collection, None) is not None:
            Path(self.path).write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")


# -- manifests on a Volume ---------------------------------------------------------------------
@dataclass(slots=True)
class VolumeState:
    """Manifests kept on a Volume (see the module docstring): `volume_dir` holds, per
    collection, `<collection>.sqlite` (a whole copy) and `<collection>.journal-N.sqlite`
    (what changed after it); `local_dir` the working copies; `commit` the Volume's."""

    volume_dir: Path
    local_dir: Path
    commit: Callable[[], None]
    whole_every: int = 24  # journals before a checkpoint writes a whole copy again
    since: dict[str, float] = field(default_factory=dict)  # per manifest: when its last checkpoint began

    def __post_init__(self) -> None:
        self.volume_dir, self.local_dir = Path(self.volume_dir), Path(self.local_dir)

    def _journals(self, name: str) -> list[Path]:
        found = self.volume_dir.glob(f"{name}.journal-*.sqlite") if self.volume_dir.is_dir() else []
        return sorted(found, key=_journal_number)

    def pull(self, collection: str) -> None:
        """The collection's manifest as the last checkpoint left it, into `local_dir`."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        name, local = f"{collection}.sqlite", self.local_dir / f"{collection}.sqlite"
        for stale in (local, local.with_name(local.name + "-wal"), local.with_name(local.name + "-shm")):
            stale.unlink(missing_ok=True)
        whole = self.volume_dir / name
        if not whole.is_file():
            return
        shutil.copyfile(whole, local)
        journals = self._journals(collection)
        if journals:
            db = sqlite3.connect(local)
            try:
                for journal in journals:
                    db.execute("ATTACH DATABASE ? AS j", (str(journal),))
                    with db:
                        db.execute("DELETE FROM articles WHERE article_id IN (SELECT article_id FROM j.removed)")
                        db.execute("INSERT OR REPLACE INTO articles SELECT * FROM j.articles")
                    db.execute("DETACH DATABASE j")
            finally:
                db.close()
        log.info("pulled the manifest of %s from the Volume (%d journals applied)", collection, len(journals))

    def checkpoint(self, manifest: Manifest) -> None:
        """The manifest's callback: a journal of what changed since the last
        checkpoint, or a whole copy (the first time, after a clear, every `whole_every`)."""
        name = Path(manifest.path).stem
        started, since = time.time(), self.since.get(name)
        journals = self._journals(name)
        if since is None or manifest.cleared_at >= since or len(journals) >= self.whole_every:
            self._write_whole(manifest, name, journals)
        else:
            rows, removed = manifest.changes(since - 1.0)  # a second's overlap: rewriting a row is harmless
            number = _journal_number(journals[-1]) + 1 if journals else 1
            self._write_journal(name, number, rows, removed)
        self.since[name] = started
        self.commit()

    def _write_whole(self, manifest: Manifest, name: str, journals: list[Path]) -> None:
        manifest.backup_to(self.volume_dir / f"{name}.sqlite")
        for journal in journals:
            journal.unlink(missing_ok=True)

    def _write_journal(self, name: str, number: int, rows: list, removed: list[str]) -> None:
        self.volume_dir.mkdir(parents=True, exist_ok=True)
        target = self.volume_dir / f"{name}.journal-{number}.sqlite"
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        db = sqlite3.connect(partial)
        try:
            with db:
                db.execute(
                    "CREATE TABLE articles (article_id TEXT PRIMARY KEY, article_hash TEXT, chunk_count "
                    "INTEGER, rejected INTEGER NOT NULL, pending INTEGER NOT NULL, updated_at REAL NOT NULL)"
                )
                db.execute("CREATE TABLE removed (article_id TEXT PRIMARY KEY)")
                db.executemany(
                    "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (r.article_id, r.article_hash, r.chunk_count, r.rejected, int(r.pending), r.updated_at)
                        for r in rows
                    ),
                )
                db.executemany("INSERT INTO removed VALUES (?)", ((i,) for i in removed))
        finally:
            db.close()
        os.replace(partial, target)

    def consolidate(self, collection: str) -> None:
        """After a finished run (its manifest closed): one whole copy, no journals."""
        local = self.local_dir / f"{collection}.sqlite"
        if not local.is_file():
            return
        partial = self.volume_dir / f"{collection}.sqlite.partial"
        shutil.copyfile(local, partial)
        os.replace(partial, self.volume_dir / f"{collection}.sqlite")
        for journal in self._journals(collection):
            journal.unlink(missing_ok=True)
        self.commit()

    def forget(self, collection: str) -> None:
        """A dropped collection's manifest, off the Volume."""
        for path in [self.volume_dir / f"{collection}.sqlite", *self._journals(collection)]:
            path.unlink(missing_ok=True)
        self.commit()


def _journal_number(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1].split(".")[0])


# -- one reindex at a time, across containers --------------------------------------------------
class SharedDict(Protocol):
    """What `RunLock` needs of a `modal.Dict`: `put(key, value, skip_if_exists=True)`
    stores only if the key is absent and says whether it did (modal 1.6.4
    `dict.py:556-573`), `get` and `pop`."""

    def put(self, key: str, value: Any, *, skip_if_exists: bool = False) -> bool: ...

    def get(self, key: str, default: Any = None) -> Any: ...

    def pop(self, key: str) -> Any: ...


@dataclass(slots=True)
class RunLock:
    """A lock over a shared dict: the key is taken by the first `put`, and a holder
    older than `stale_seconds` (a container that died holding it; a modal.Dict entry
    lives on for days) is taken over."""

    shared: SharedDict
    key: str
    holder: str
    stale_seconds: float

    def __enter__(self) -> RunLock:
        mine = {"holder": self.holder, "since": time.time()}
        if self.shared.put(self.key, mine, skip_if_exists=True):
            return self
        held = self.shared.get(self.key) or {}
        age = time.time() - float(held.get("since", 0))
        if age < self.stale_seconds:
            raise RunLockedError(
                f"another reindex of this collection is running ({held.get('holder', '?')}, for "
                f"{age / 60:,.0f} minutes): wait for it to finish"
            )
        log.warning(
            "taking over the lock %s from %s, held %.0f s (longer than a reindex may run)",
            self.key,
            held.get("holder", "?"),
            age,
        )
        self.shared.pop(self.key)
        if not self.shared.put(self.key, mine, skip_if_exists=True):
            raise RunLockedError("another reindex of this collection just started: wait for it to finish")
        return self

    def __exit__(self, *exc: object) -> None:
        held = self.shared.get(self.key) or {}
        if held.get("holder") == self.holder:
            self.shared.pop(self.key)


# -- the reindex -----------------------------------------------------------------------------
def reindex_snapshot(
    dataset_path: str, settings: IngestSettings, *, state: VolumeState | None = None, embedder: Embedder | None = None
) -> RunSummary:
    """The incremental reindex of a live collection against the dump saved at
    `dataset_path`. Its manifest lives on the Volume (`state`): only the live
    collection's is pulled, and a whole copy is written back at the end. It refuses to
    build a whole collection on one container (a first build, or other settings: that
    is the sharded load's work)."""
    settings = replace(settings, source=dataset_path)
    live = None
    if state is not None:
        store = open_store(settings.store)
        try:
            live = store.resolve(settings.store.collection).collection
        finally:
            store.close()
        if live is not None:
            state.pull(live)
        settings = replace(settings, store=replace(settings.store, state_dir=str(state.local_dir)))
    summary = run_ingest(
        settings,
        embedder=embedder,
        mode="reindex",
        in_place_only=True,
        checkpoint=state.checkpoint if state is not None else None,
    )
    if state is not None and live is not None:
        state.consolidate(live)
    return summary
