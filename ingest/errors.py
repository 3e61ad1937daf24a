"""Errors of the ingest service. Each boundary translates its dependency's
exceptions into one of these, chained, with a message that says what to fix.

    IngestError
    ├── SettingsError            a flag or environment variable has a bad value
    ├── SourceError              a source cannot be read, or lacks a column
    ├── EmbedderError            a model or embedding server cannot be used
    │   ├── InputRejected        the server refused one input for good
    │   ├── BackendFailure       the server's model backend (its GPU) is broken, or its process is gone
    │   └── RouterError          the TEI server could not be started
    ├── StoreError               Qdrant cannot be used
    │   ├── StoreLockedError     a local storage folder is held by another process
    │   ├── CollectionMismatchError  the collection was built with another model/chunking
    │   └── RebuildError         a new collection cannot replace the live one (yet)
    ├── StateError               the manifest (what is indexed) cannot be used
    │   ├── RunLockedError       another run is writing the same collection
    │   └── MassDeleteError      a snapshot lacks too many indexed articles to delete them
    ├── SearchError              the collection cannot be searched as asked (`search`)
    │   └── SearchUsageError     a search's arguments are wrong: an empty query, k out of range
    └── ShardError               a shard of the sharded load failed (names the shard)

The errors that travel back from a Modal container (`InputRejected`, `ShardError`)
pickle with their fields, not only their message.
"""

from __future__ import annotations

import errno
import os
import sqlite3


class IngestError(Exception):
    """Base of every error this service reports to its user."""


class SettingsError(IngestError, ValueError):
    pass


class SourceError(IngestError):
    pass


class EmbedderError(IngestError):
    pass


class InputRejected(EmbedderError):
    """The embedding server refused one input for good (too long without
    truncation, empty); `index` is its position in the request."""

    def __init__(
        self, index: int, status: int, message: str, where: str = "the embedding server", what: str = "input"
    ) -> None:
        super().__init__(f"{where} refused {what} {index} ({status}): {message}")
        self.index, self.status, self.message, self.where, self.what = index, status, message, where, what

    def __reduce__(self):
        return (type(self), (self.index, self.status, self.message, self.where, self.what))


class BackendFailure(EmbedderError):
    """The embedding server's backend failed whole requests (a broken GPU), or its
    process is gone: not a bad input, and not worth another request to it."""


class RouterError(EmbedderError):
    """The embedding server could not be started."""


class StoreError(IngestError):
    pass


class StoreLockedError(StoreError):
    pass


class LegacyStoreError(StoreError):
    """A folder written by an earlier version's embedded store: `python -m ingest migrate` moves it."""


class CollectionMismatchError(StoreError):
    pass


class RebuildError(StoreError):
    pass


class StateError(IngestError):
    pass


class RunLockedError(StateError):
    pass


class MassDeleteError(StateError):
    pass


class SearchError(IngestError):
    """The collection cannot be searched as asked; the message says why."""


class SearchUsageError(SearchError, ValueError):
    """A search's arguments are wrong (an empty query, `k` out of range, an unknown
    mode, hybrid search of a collection without sparse vectors): the caller's to fix."""


class ShardError(IngestError):
    """A shard failed; names the shard so the driver knows what to retry.
    (Modal returns exceptions from `starmap` without saying which input raised.)
    `broken`: the container's GPU or TEI server is broken, so it takes no more work;
    `stamp`: which container ran it, and when (for the GPU-seconds it used)."""

    def __init__(self, start: int, stop: int, message: str, *, broken: bool = False, stamp: object = None) -> None:
        super().__init__(f"shard [{start}, {stop}): {message}")
        self.start, self.stop, self.message, self.broken, self.stamp = start, stop, message, broken, stamp

    def __reduce__(self):  # pickles with its fields, not just the formatted message
        return (_shard_error, (type(self), self.start, self.stop, self.message, self.broken, self.stamp))

    @property
    def shard(self) -> tuple[int, int]:
        return (self.start, self.stop)


def _shard_error(kind: type, start: int, stop: int, message: str, broken: bool, stamp: object) -> ShardError:
    return kind(start, stop, message, broken=broken, stamp=stamp)


def explain(exc: BaseException, *, qdrant: str | None = None) -> str:
    """One line for a failure at the command line's edge: an `IngestError`'s own
    message, or, for what the dependencies raise (an unreachable server, a full
    disk, a refused permission), what happened and what to do. The traceback is
    for `-v` only (`ingest.edge.report_failure`)."""
    if isinstance(exc, IngestError):
        return str(exc)
    if (
        isinstance(exc, OSError)
        and exc.errno == errno.ENOSPC
        or (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc))
    ):
        where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        strerror = getattr(exc, "strerror", None)
        if strerror and strerror != os.strerror(errno.ENOSPC):  # our own margin's words (ingest.store.edge_folder)
            where += f" ({strerror})"
        return (
            f"the disk is full{where}: free some space and run the same command again (what was written "
            "before is kept, and the run resumes)"
        )
    if isinstance(exc, PermissionError):
        return f"no permission to use {exc.filename or 'a file'}: {exc.strerror}; pick a folder you can write to"
    module, name = type(exc).__module__, type(exc).__name__
    if module.startswith(("qdrant_client", "grpc")) or (module.startswith(("httpx", "httpcore")) and "Connect" in name):
        details = getattr(exc, "details", None)  # a gRPC error's own words
        detail = details() if callable(details) else str(exc).splitlines()[0] if str(exc) else name
        where = f" at {qdrant}" if qdrant else ""
        return (
            f"cannot use the Qdrant server{where} ({str(detail)[:200]}): check --qdrant-url (QDRANT_URL), "
            "QDRANT_API_KEY and that the server is up"
        )
    if isinstance(exc, ConnectionError):
        return f"a connection failed ({name}: {exc}): check the server's address and that it is up"
    return f"unexpected error ({name}: {exc}); run again with -v for the traceback, and report it if it persists"
