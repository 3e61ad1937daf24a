"""The row where each article id was first met in a source, kept on disk: a run finds
an id given twice without holding every id of the corpus in memory.

A private temporary SQLite file (deleted when closed, or by the kernel with the process)
holds the ids; a few megabytes of its pages are cached, so the memory is the same at
10,000 articles or 6.4 million. Ids are checked and recorded a batch at a time.

    >>> with FirstRows() as firsts:
    ...     firsts.claim([("a", 1), ("b", 2), ("a", 3)])
    ...     firsts.claim([("b", 4), ("c", 5)])
    {'a': 1, 'b': 2}
    {'b': 2, 'c': 5}
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

_CHUNK = 500  # ids per SQL statement: under SQLite's limit on bound variables
CACHE_KIB = 16 * 1024  # SQLite's page cache for the file: bounded, whatever the number of ids


class FirstRows:
    """Article ids with the row that first had each one (see the module docstring)."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)  # "": a temporary file, removed on close
        self._db.execute("PRAGMA journal_mode=OFF")  # a scratch file: nothing to recover after a crash
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._db.execute("CREATE TABLE firsts (article_id TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID")

    def claim(self, rows: Sequence[tuple[str, int]]) -> dict[str, int]:
        """Record each (id, row) whose id was not met before; returns, for every id given,
        the row that first had it (an earlier batch's, this row, or an earlier one of this batch)."""
        ids = list(dict.fromkeys(article_id for article_id, _ in rows))
        first: dict[str, int] = {}
        for start in range(0, len(ids), _CHUNK):
            part = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(part))
            first.update(self._db.execute(f"SELECT * FROM firsts WHERE article_id IN ({marks})", part))
        fresh = {}
        for article_id, position in rows:
            if article_id not in first:
                first[article_id] = fresh[article_id] = position
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO firsts VALUES (?, ?)", fresh.items())
        self._db.execute("COMMIT")
        return first

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FirstRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
