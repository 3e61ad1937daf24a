"""The folder of an embedded store as this process holds it: the lock, the records
beside the shards, and how a shard is created and dropped so that a kill or a power
cut at any moment leaves a folder the next command uses.

The lock. qdrant-edge-py 0.9.0 refuses a second process's `EdgeShard.load` of a
shard (its write-ahead log is locked) but, before refusing, deletes the holder's
tracker journals, and the holder dies at its next flush (docs/upstream-bugs.md). So
no shard is loaded, created or dropped here before this process holds
`<folder>/edge/.lock` (`flock`, which the kernel releases when the process dies).
The lock file names its holder (pid, command, since) for the message a second
process gets. Within one process every store of a folder shares one `Folder` (two
retrievers of one folder in one program work), and the lock is let go when the
last store of the folder is closed.

Records. `specs/<collection>.json` and `aliases.json` are written to a temporary
file, synced, renamed over the old one and the folder synced: a rename that is not
synced can reach the disk before the file's blocks, and a power cut then leaves an
empty record.

Room. Edge maps its files (the write-ahead log's segments, the vector and payload
pages) into memory as sparse files: a write into a page the full disk cannot back
kills the process with SIGBUS, no message, nothing flushed. So, like a Qdrant
server (its `DiskUsageWatcher` refuses updates below twice the WAL's capacity),
nothing is created or written while the folder's disk has less than `MIN_FREE_MB`
free: the command stops with the one line a full disk gets, and resumes once there
is room.

Creation. A shard is built under `shards/.new-<collection>-<hex>`, synced, its
record written, and only then renamed into place: a folder under `shards/` always
has its record. What an interrupted creation or drop leaves (`.new-*`, `.drop-*`) is
removed by the next process that takes the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ingest.crashpoints import crashpoint
from ingest.errors import StoreError, StoreLockedError

try:
    import qdrant_edge as q  # the embedded engine: only this backend needs it
except ImportError:  # pragma: no cover - depends on the install
    q = None

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
MIN_FREE_MB = 64  # a Qdrant server's default margin: 2 x wal_capacity_mb (32)
BUILDING, DROPPING = ".new-", ".drop-"

_folders: dict[str, Folder] = {}  # real path -> the one Folder of this process
_folders_lock = threading.Lock()


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(path: Path) -> None:
    """fsync every file and folder under `path` (a new shard: a few small files)."""
    for parent, _, files in os.walk(path, topdown=False):
        for name in files:
            fd = os.open(Path(parent) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(Path(parent))


def write_durably(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a power cut leaves the old file or the new one, never an empty one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    sync_dir(path.parent)


def read_record(path: Path) -> Any:
    """A JSON record of the store, or a StoreError naming the file and the fix."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(
            f"{path} is damaged ({type(exc).__name__}; a power cut while an earlier version wrote "
            "it?): delete it and run the command that built the collection again (it writes the "
            "record and the alias again; nothing is embedded again)"
        ) from exc


def holder_line() -> str:
    """Who holds a folder, for the message a second process gets: no flag values (they may hold secrets)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    words = [Path(argv[0]).name] if argv else []
    for word in argv[1:]:
        if word.startswith("-") and word != "-m":
            break
        words.append(word)
    return json.dumps(
        {"pid": os.getpid(), "command": " ".join(words)[:120], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    )


def describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f" (pid {int(holder['pid'])}, `{holder['command']}`, since {holder['since']})"
    except (ValueError, KeyError, TypeError):
        return ""


class Folder:
    """`<store>/edge` as this process holds it: open shards, the lock, the records."""

    def __init__(self, root: Path, *, temporary: bool = False) -> None:
        self.root = root
        self.shards: dict[str, Any] = {}
        self.lock = threading.RLock()  # this process's threads: aliases, specs, shards
        self.temporary = temporary  # a ":memory:" store: a folder deleted on close
        self.users = 0
        self.outside: dict[str, int] = {}  # points outside a graph, per collection (`EdgeStore._outside`)
        self._held: int | None = None  # the lock file's descriptor while this process holds the folder

    def shard_path(self, collection: str) -> Path:
        return self.root / "shards" / collection

    def spec_path(self, collection: str) -> Path:
        return self.root / "specs" / f"{collection}.json"

    def graph_path(self, collection: str) -> Path:
        return self.root / "graphs" / f"{collection}.json"

    def aliases(self) -> dict[str, str]:
        path = self.root / "aliases.json"
        return read_record(path) if path.is_file() else {}

    def write_json(self, path: Path, data: Any) -> None:
        with self.lock:
            self.hold()
            write_durably(path, json.dumps(data, sort_keys=True))

    def hold(self) -> None:
        """Take the folder's lock (once per process), or raise StoreLockedError naming its holder."""
        with self.lock:
            if self._held is not None:
                return
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / LOCK_FILE
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = describe_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                os.close(fd)
                raise StoreLockedError(
                    f"the Qdrant storage folder {self.root.parent} is in use by another process{holder}: one process "
                    "holds an embedded store at a time; wait for it to finish or stop it (a `search serve` holds "
                    "it until stopped: query that server instead), pass another --qdrant-path, or run a Qdrant "
                    "server that many processes share (--qdrant-url)"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder_line().encode("utf-8"), 0)
            self._held = fd
            self._sweep()

    def _sweep(self) -> None:
        """Remove what an interrupted creation or drop left: no other process is using it (the lock)."""
        shards = self.root / "shards"
        for leftover in sorted(shards.iterdir()) if shards.is_dir() else ():
            if leftover.name.startswith((BUILDING, DROPPING)):
                shutil.rmtree(leftover, ignore_errors=True)
                if leftover.name.startswith(BUILDING):
                    log.warning("removed %s: a collection's creation was interrupted there (it held nothing)", leftover)

    def check_room(self) -> None:
        """Refuse to write with less than MIN_FREE_MB free (module docstring): an OSError(ENOSPC),
        which the command line's edge reports as a full disk, naming the folder."""
        free = shutil.disk_usage(self.root).free
        if free < MIN_FREE_MB << 20:
            raise OSError(
                errno.ENOSPC,
                f"{free / 2**20:.1f} MB free, the embedded store needs {MIN_FREE_MB} MB to write safely",
                str(self.root.parent),
            )

    def shard(self, collection: str) -> Any:
        """The open shard of `collection` (opened on first use), or None if it has none."""
        with self.lock:
            if collection in self.shards:
                return self.shards[collection]
            path = self.shard_path(collection)
            if not path.is_dir():
                return None
            self.hold()
            try:
                self.shards[collection] = q.EdgeShard.load(str(path))
            except Exception as exc:  # Edge raises bare Exceptions: the WAL lock's is "WouldBlock"
                if "WouldBlock" in str(exc):  # a process of an earlier version, which took no lock of ours
                    raise StoreLockedError(
                        f"the Qdrant storage folder {self.root.parent} is in use by another "
                        "process: wait for it to finish or stop it"
                    ) from exc
                raise StoreError(f"cannot open the collection {collection!r} in {self.root.parent}: {exc}") from exc
            return self.shards[collection]

    def create(self, collection: str, config: Any, record: dict[str, Any], prepare: Callable[[Any], None]) -> Any:
        """Create `collection`'s shard (`prepare` adds its indexes) and its record, atomically (module docstring)."""
        with self.lock:
            self.hold()
            final = self.shard_path(collection)
            building = final.with_name(f"{BUILDING}{collection}-{uuid.uuid4().hex[:8]}")
            self.check_room()
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                shard = q.EdgeShard.create(str(building), config)
                try:
                    prepare(shard)
                    shard.flush()
                finally:
                    shard.close()
                sync_tree(building)
                crashpoint("collection-built")
                self.write_json(self.spec_path(collection), record)
                crashpoint("collection-recorded")
                os.rename(building, final)
                sync_dir(final.parent)
            except BaseException:  # a full disk, an error of Edge's: nothing half-made stays behind
                shutil.rmtree(building, ignore_errors=True)
                raise
            return self.shard(collection)

    def close_shard(self, collection: str) -> None:
        """Flush and close `collection`'s shard in this process (opened again on next use), so that
        a process working on our behalf can load it: the folder's lock stays ours."""
        with self.lock:
            shard = self.shards.pop(collection, None)
            if shard is not None:
                shard.flush()
                shard.close()

    def drop(self, collection: str) -> None:
        """Remove a shard and its record: renamed away first, so no half-deleted shard is ever loaded."""
        with self.lock:
            self.hold()
            shard = self.shards.pop(collection, None)
            if shard is not None:
                shard.close()
            path = self.shard_path(collection)
            if path.is_dir():
                doomed = path.with_name(f"{DROPPING}{collection}-{uuid.uuid4().hex[:8]}")
                os.rename(path, doomed)
                sync_dir(path.parent)
                shutil.rmtree(doomed, ignore_errors=True)
            self.spec_path(collection).unlink(missing_ok=True)
            self.graph_path(collection).unlink(missing_ok=True)
            self.outside.pop(collection, None)

    def release(self) -> None:
        """One store of this folder is closed; the last one closes the shards and lets the lock go."""
        with _folders_lock, self.lock:
            self.users = max(0, self.users - 1)
            if self.users:
                return
            for shard in self.shards.values():
                shard.close()
            self.shards.clear()
            if self._held is not None:
                os.close(self._held)
                self._held = None
            if self.temporary:
                shutil.rmtree(self.root.parent, ignore_errors=True)


def acquire(root: Path, *, temporary: bool = False) -> Folder:
    """The Folder of `root` in this process (one per folder), counted as used once more."""
    with _folders_lock:
        if temporary:
            folder = Folder(root, temporary=True)
        else:
            key = os.path.realpath(root)
            folder = _folders.get(key) or _folders.setdefault(key, Folder(root))
        folder.users += 1
        return folder
