"""Crash points: a test aid that kills this process, with SIGKILL, at a named
place in the code, so that tests can check what a resumed run does after a crash
at exactly that place.

Off unless armed, and then nearly free: `crashpoint(name)` is one truthiness check
of an empty dict. The command line arms it from `INGEST_CRASH_AT` (read at the
edge, in `ingest.cli`), a comma-separated list of `name:count[:delay]`: the process
dies the `count`-th time it passes `name` (1 = the first time), at once, or
`delay` seconds later from a timer thread (so that it dies *during* what follows,
an upsert for instance).

    INGEST_CRASH_AT=before-manifest-write:3 python -m ingest --source rows.jsonl

Places (see the code that names them):

- `collection-built`       a new collection's shard is built (embedded store), not yet recorded
- `collection-recorded`    its build record is written, the shard not yet in place
- `after-collection`       the collection exists, nothing was written yet
- `before-upsert`          a window is embedded and its articles marked pending
- `upsert`                 a request of points is about to be sent to Qdrant
- `before-manifest-write`  a window's points (and stale chunks) are acknowledged
- `before-delete`          articles absent from the snapshot are about to be deleted
- `before-alias-switch`    a rebuilt collection passed its smoke query
- `before-copy-manifest`   a copy's points are all in the target; its manifest is not
- `before-copy-alias`      a copy is complete; the alias does not lead to it yet
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Mapping

ENV = "INGEST_CRASH_AT"

_armed: dict[str, list[float]] = {}  # name -> [passes left, delay]
_lock = threading.Lock()


def arm(spec: str) -> None:
    """Arm the crash points `spec` names (`name:count[:delay]`, comma-separated)."""
    for part in filter(None, (p.strip() for p in spec.split(","))):
        fields = part.split(":")
        try:
            if not 2 <= len(fields) <= 3:
                raise ValueError(part)
            count, delay = int(fields[1]), float(fields[2]) if len(fields) == 3 else 0.0
        except ValueError:
            raise ValueError(f"{ENV}: {part!r} is not name:count[:delay], e.g. before-upsert:2") from None
        if count < 1 or delay < 0:
            raise ValueError(f"{ENV}: {part!r} needs a count of at least 1 and a delay of at least 0")
        _armed[fields[0]] = [count, delay]


def arm_from_env(env: Mapping[str, str]) -> None:
    spec = env.get(ENV)
    if spec:
        arm(spec)


def disarm() -> None:
    _armed.clear()


def crashpoint(name: str) -> None:
    """Die here if the crash point `name` is armed and its count is reached."""
    if not _armed:
        return
    with _lock:
        state = _armed.get(name)
        if state is None:
            return
        state[0] -= 1
        if state[0] > 0:
            return
        delay = state[1]
        del _armed[name]
    if delay:
        threading.Timer(delay, _kill).start()
    else:
        _kill()


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
