"""What is indexed, recorded next to the data: one SQLite file per physical collection.

A row per article: the hash of the version whose points the collection holds, its
number of chunks, how many of them the embedder refused (dead-lettered, so not
stored), whether a run is writing it now (`pending`), and when the row changed.

The rules that keep it from drifting away from the collection:

- a row is written only after Qdrant acknowledged (`wait=True`) every upsert and
  stale-chunk delete of that article: the manifest never claims what is not stored;
- an article is marked pending before its first point is written, and stays so
  until its row is written: after a crash, the pending articles are exactly those
  whose points may be in any state, and the next run redoes them (or deletes them
  when the snapshot no longer has them);
- the points carry their own hashes (`article_hash`, `chunk_hash`), so the manifest
  can always be checked against the collection, or rebuilt from it
  (`ingest.state.reconcile`).

SQLite gives atomic, crash-safe transactions in one file (about 100 bytes an article).
One connection serves the pipeline's threads, behind a lock.

    >>> with Manifest.open("state/wiki-1a2b3c4d.sqlite", collection="wiki-1a2b3c4d",
    ...                    fingerprint=spec.fingerprint, store="/srv/qdrant_data") as manifest:
    ...     manifest.lookup(["12", "13"])                       # doctest: +SKIP
    {'12': ManifestRow(article_id='12', article_hash='9f2c...', chunk_count=3, ...)}
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ingest.errors import StateError
from ingest.settings import redact_url
from ingest.store.base import ChunkRef

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_CHUNK = 500  # ids per SQL statement: under SQLite's limit on bound variables
PAGE = 10_000  # rows per read of `rows()`: memory bounded by a page, not by the manifest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS articles (
    article_id   TEXT PRIMARY KEY,
    article_hash TEXT,              -- NULL: no version of it was ever completely written
    chunk_count  INTEGER,           -- NULL: unknown
    rejected     INTEGER NOT NULL DEFAULT 0,
    pending      INTEGER NOT NULL DEFAULT 0,
    updated_at   REAL NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class ManifestRow:
    article_id: str
    article_hash: str | None
    chunk_count: int | None
    rejected: int = 0
    pending: bool = False
    updated_at: float = 0.0

    def matches(self, article_hash: str) -> bool:
        """True when the collection holds exactly this version, whole: nothing to do.
        An article with chunks an embedder refused is never whole: each run tries
        those chunks again (the others keep their stored vectors)."""
        return not self.pending and self.rejected == 0 and self.article_hash == article_hash

    @property
    def expected_points(self) -> int | None:
        return None if self.chunk_count is None else self.chunk_count - self.rejected


@dataclass(frozen=True, slots=True)
class Category:
    """Articles in one state of drift: how many, and a few of their ids."""

    count: int = 0
    examples: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Comparison:
    """The manifest against what was observed in the collection (`observe`)."""

    lost: Category = field(default_factory=Category)  # rows whose points are all gone
    short: Category = field(default_factory=Category)  # fewer points than the row says
    extra: Category = field(default_factory=Category)  # more points, or chunks past the count
    stale: Category = field(default_factory=Category)  # points of another version (hash)
    unknown: Category = field(default_factory=Category)  # points of articles without a row
    pending: Category = field(default_factory=Category)  # rows a stopped run left pending
    refused: Category = field(default_factory=Category)  # rows with chunks an embedder refused (dead-lettered)

    @property
    def drifted(self) -> int:
        return self.lost.count + self.short.count + self.extra.count + self.stale.count + self.unknown.count


class Manifest:
    """The SQLite manifest of one physical collection (see the module docstring).

    `checkpoint(manifest)`, when given, is called after a write at most every
    `checkpoint_every` seconds, and on close: on Modal it copies the file to the
    Volume and commits it."""

    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        path: str,
        checkpoint: Callable[[Manifest], None] | None = None,
        checkpoint_every: float = 300.0,
    ) -> None:
        self._db = db
        self.path = path
        self._lock = threading.RLock()
        self._checkpoint = checkpoint
        self._checkpoint_every = checkpoint_every
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        self.recheck = False  # True: not known to describe this store: compare before trusting it
        self.cleared_at = float("-inf")  # when every row was last deleted (`changes` cannot say that)
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (article_id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS removed (article_id TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID"
        )

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        collection: str,
        fingerprint: str,
        store: str,
        checkpoint: Callable[[Manifest], None] | None = None,
        checkpoint_every: float = 300.0,
    ) -> Manifest:
        """Open (or create) the manifest at `path` for `collection` of `store`.

        A manifest of another collection is refused; one of another store is flagged
        for a full comparison (`recheck`); one written for another build of the
        collection (another fingerprint) is emptied."""
        location = str(path)
        if location != ":memory:":
            Path(location).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(location, isolation_level=None, check_same_thread=False, timeout=30.0)
            if location != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
                # Every commit synced: a pending mark must reach the disk before the points it covers
                # (flushed by the store), or a power cut leaves part of an article looking whole.
                db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the manifest {location}: {exc}") from exc
        manifest = cls(db, path=location, checkpoint=checkpoint, checkpoint_every=checkpoint_every)
        manifest._claim(collection=collection, fingerprint=fingerprint, store=store)
        return manifest

    @classmethod
    def memory(cls) -> Manifest:
        """A throw-away manifest (tests, one shard of a bulk load)."""
        return cls.open(":memory:", collection="", fingerprint="", store="")

    def _claim(self, *, collection: str, fingerprint: str, store: str) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        if meta.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise StateError(
                f"manifest {self.path} has schema {meta['schema']}, this version reads "
                f"{SCHEMA_VERSION}: move it away and run `python -m ingest repair`"
            )
        if meta.get("collection", collection) != collection:
            raise StateError(
                f"manifest {self.path} records collection {meta['collection']!r}, not "
                f"{collection!r}: move it back, or delete it and run `python -m ingest repair`"
            )
        if meta.get("store", store) != store:
            # A store folder moved with its state, or a state folder shared by mistake: the next
            # run compares the manifest with the collection article by article before trusting it.
            log.warning(
                "manifest %s was written for the store %s and is now used with %s: it will be checked "
                "against the collection (give each store its own --state-dir)",
                self.path,
                _shown(meta["store"]),
                _shown(store),
            )
            self.recheck = True
        if meta.get("fingerprint", fingerprint) != fingerprint:
            log.warning(
                "manifest %s described another build of %s (fingerprint %s, now %s): emptied",
                self.path,
                collection,
                meta["fingerprint"],
                fingerprint,
            )
            self.clear()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [
                    ("schema", SCHEMA_VERSION),
                    ("store", store),
                    ("collection", collection),
                    ("fingerprint", fingerprint),
                ],
            )

    def note(self, key: str) -> str | None:
        """A note about the collection (e.g. `ingest.state.provenance`'s sources); `clear` forgets them."""
        with self._lock:
            found = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"note.{key}",)).fetchone()
        return found[0] if found else None

    def set_note(self, key: str, value: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"note.{key}", value))

    # -- reading -----------------------------------------------------------------
    def lookup(self, article_ids: Sequence[str]) -> dict[str, ManifestRow]:
        rows: dict[str, ManifestRow] = {}
        with self._lock:
            ids = list(dict.fromkeys(article_ids))
            for part in (ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK)):
                marks = ",".join("?" * len(part))
                for row in self._db.execute(f"SELECT * FROM articles WHERE article_id IN ({marks})", part):
                    rows[row[0]] = _row(row)
        return rows

    def rows(self, page: int = PAGE) -> Iterator[ManifestRow]:
        """Every row, in article id order, read `page` rows at a time (never all at once)."""
        after: str | None = None
        while True:
            with self._lock:
                if after is None:
                    found = self._db.execute("SELECT * FROM articles ORDER BY article_id LIMIT ?", (page,)).fetchall()
                else:
                    found = self._db.execute(
                        "SELECT * FROM articles WHERE article_id > ? ORDER BY article_id LIMIT ?", (after, page)
                    ).fetchall()
            yield from (_row(r) for r in found)
            if len(found) < page:
                return
            after = found[-1][0]

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM articles").fetchone()[0]

    def expected_points(self) -> int:
        """Points the collection should hold for the articles no run left pending."""
        with self._lock:
            return self._db.execute(
                "SELECT coalesce(sum(chunk_count - rejected), 0) FROM articles WHERE pending = 0"
            ).fetchone()[0]

    def count_pending(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM articles WHERE pending = 1").fetchone()[0]

    def pending_ids(self, limit: int | None = None) -> list[str]:
        """The ids a stopped run left pending, in id order; at most `limit` of them."""
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT article_id FROM articles WHERE pending = 1 ORDER BY article_id LIMIT ?",
                    (-1 if limit is None else limit,),
                )
            ]

    # -- the articles of this run's snapshot -----------------------------------------
    def mark_seen(self, article_ids: Iterable[str]) -> None:
        """Remember ids met in the snapshot (a temporary table: gone with the connection)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", ((i,) for i in article_ids))

    def count_unseen(self) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT count(*) FROM articles WHERE article_id NOT IN (SELECT article_id FROM seen)"
            ).fetchone()[0]

    def unseen(self, limit: int) -> list[str]:
        """Up to `limit` indexed ids the snapshot did not have (they go as they are removed)."""
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT article_id FROM articles WHERE article_id NOT IN (SELECT article_id FROM seen) "
                    "ORDER BY article_id LIMIT ?",
                    (limit,),
                )
            ]

    # -- writing -------------------------------------------------------------------
    def mark_pending(self, article_ids: Iterable[str]) -> None:
        """Before the first point of these articles is written (or deleted)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO articles (article_id, article_hash, chunk_count, rejected, pending, updated_at) "
                "VALUES (?, NULL, NULL, 0, 1, ?) ON CONFLICT(article_id) DO UPDATE SET pending = 1, "
                "updated_at = excluded.updated_at",
                ((i, now) for i in article_ids),
            )
        self._wrote()

    def complete(self, rows: Iterable[ManifestRow]) -> None:
        """Record articles whose points (and stale-chunk deletes) Qdrant acknowledged
        (`rows` is read as it is written: it may be another manifest's `rows()`)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO articles VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (r.article_id, r.article_hash, r.chunk_count, r.rejected, int(r.pending), r.updated_at or now)
                    for r in rows
                ),
            )
        self._wrote()

    def remove(self, article_ids: Sequence[str]) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM articles WHERE article_id = ?", ((i,) for i in article_ids))
            self._db.executemany("INSERT OR REPLACE INTO removed VALUES (?, ?)", ((i, now) for i in article_ids))
        self._wrote()

    def clear(self) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM articles")
            self._db.execute("DELETE FROM meta WHERE key LIKE 'note.%'")
            self.cleared_at = time.time()
        self._wrote()

    def changes(self, since: float) -> tuple[list[ManifestRow], list[str]]:
        """The rows written and the ids removed from `since` on (by this connection), for
        a checkpoint that copies only what changed; after a `clear` (see `cleared_at`)
        only a whole copy says what the manifest holds."""
        with self._lock:
            written = [_row(r) for r in self._db.execute("SELECT * FROM articles WHERE updated_at >= ?", (since,))]
            removed = [r[0] for r in self._db.execute("SELECT article_id FROM removed WHERE at >= ?", (since,))]
        return written, removed

    # -- comparing with the collection -------------------------------------------------
    def start_observing(self) -> None:
        """Begin a fresh record of the collection's points, aggregated per article
        (one row an article, whatever the number of points: bounded by the manifest)."""
        with self._lock:
            self._db.execute("DROP TABLE IF EXISTS temp.observed")
            self._db.execute(
                "CREATE TEMP TABLE observed (article_id TEXT PRIMARY KEY, points INTEGER, "
                "max_index INTEGER, min_hash TEXT, max_hash TEXT) WITHOUT ROWID"
            )

    def observe(self, points: Iterable[ChunkRef]) -> None:
        """Add points seen in the collection (`Store.scan_chunks`)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO observed VALUES (?, 1, ?, ?, ?) ON CONFLICT(article_id) DO UPDATE SET "
                "points = points + 1, max_index = max(max_index, excluded.max_index), "
                "min_hash = min(min_hash, excluded.min_hash), max_hash = max(max_hash, excluded.max_hash)",
                ((p.article_id, p.chunk_index, p.article_hash, p.article_hash) for p in points),
            )

    def compare(self, examples: int = 5) -> Comparison:
        """The manifest against the observed points, by kind of drift."""
        with self._lock:
            return Comparison(**{name: self._category(where, examples) for name, where in _DRIFT.items()})

    def fix_drift(self) -> tuple[int, int]:
        """Make the manifest true to the observed points: drifted rows become pending
        (the run redoes them, or deletes them), and articles found in the collection
        without a row are adopted, as done when their points are whole and of one
        version, else as pending. Returns (rows made pending, rows adopted)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            redo = self._db.execute(
                f"UPDATE articles SET pending = 1, updated_at = ? WHERE pending = 0 AND article_id IN "
                f"(SELECT article_id FROM ({_DRIFT_ROWS}))",
                (now,),
            ).rowcount
            adopted = self._adopt(now)
        self._wrote()
        return redo, adopted

    def rebuild_from_observed(self) -> tuple[int, int]:
        """Forget every row and adopt the observed points (`repair`). Returns
        (articles adopted as done, articles left pending)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM articles")
            self._adopt(now)
            done, pending = self._db.execute(
                "SELECT coalesce(sum(pending = 0), 0), coalesce(sum(pending), 0) FROM articles"
            ).fetchone()
        self._wrote()
        return done, pending

    def _adopt(self, now: float) -> int:
        return self._db.execute(
            "INSERT INTO articles SELECT o.article_id, CASE WHEN whole THEN o.min_hash END, "
            "CASE WHEN whole THEN o.points END, 0, NOT whole, ? FROM (SELECT *, (min_hash = max_hash "
            "AND min_hash != '' AND points = max_index + 1) AS whole FROM observed) o "
            "WHERE o.article_id NOT IN (SELECT article_id FROM articles)",
            (now,),
        ).rowcount

    def _category(self, where: str, examples: int) -> Category:
        query = f"SELECT article_id FROM ({where})"
        count = self._db.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
        found = [r[0] for r in self._db.execute(f"{query} ORDER BY article_id LIMIT ?", (examples,))]
        return Category(count, tuple(found))

    # -- lifecycle -----------------------------------------------------------------
    def _wrote(self) -> None:
        self._dirty = True
        if self._checkpoint is not None and time.monotonic() - self._last_checkpoint >= self._checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> None:
        if self._checkpoint is None:
            return
        with self._lock:
            self._checkpoint(self)
            self._last_checkpoint = time.monotonic()
            self._dirty = False

    def backup_to(self, path: str | Path) -> None:
        """A consistent copy of the manifest at `path`, replaced atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with self._lock:
            copy = sqlite3.connect(partial)
            try:
                self._db.backup(copy)
            finally:
                copy.close()
        os.replace(partial, target)

    def close(self) -> None:
        if self._dirty:
            self.checkpoint()
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Each kind of drift as a query of the article ids it holds.
_EXPECTED = "(a.chunk_count - a.rejected)"
_DRIFT = {
    "lost": f"SELECT a.article_id FROM articles a LEFT JOIN observed o USING (article_id) "
    f"WHERE a.pending = 0 AND o.article_id IS NULL AND {_EXPECTED} > 0",
    "short": f"SELECT a.article_id FROM articles a JOIN observed o USING (article_id) "
    f"WHERE a.pending = 0 AND o.points < {_EXPECTED}",
    "extra": f"SELECT a.article_id FROM articles a JOIN observed o USING (article_id) "
    f"WHERE a.pending = 0 AND (o.points > {_EXPECTED} OR o.max_index >= a.chunk_count)",
    "stale": "SELECT a.article_id FROM articles a JOIN observed o USING (article_id) "
    "WHERE a.pending = 0 AND (o.min_hash != a.article_hash OR o.max_hash != a.article_hash)",
    "unknown": "SELECT o.article_id FROM observed o LEFT JOIN articles a USING (article_id) WHERE a.article_id IS NULL",
    "pending": "SELECT article_id FROM articles WHERE pending = 1",
    "refused": "SELECT article_id FROM articles WHERE pending = 0 AND rejected > 0",
}
_DRIFT_ROWS = " UNION ".join(_DRIFT[k] for k in ("lost", "short", "extra", "stale"))


def _shown(store: str) -> str:
    """A store's address fit for a log line (an older manifest may hold a URL with credentials)."""
    return redact_url(store) if "://" in store else store


def _row(row: tuple) -> ManifestRow:
    return ManifestRow(row[0], row[1], row[2], row[3], bool(row[4]), row[5])
