"""`python -m ingest bench-reindex`: what an incremental reindex costs beside a full
ingest, measured in one process on one machine.

Into a throw-away store, it ingests the source (all of it, or `--limit` articles)
and times it; then it makes a second snapshot of the same articles, with a share
of them edited (a sentence inserted at a random sentence boundary, as a real edit
does: the chunks after it may shift) and a share removed, chosen by a seeded
random generator; reindexes that snapshot and prints both runs side by side. The
embedder is made (and the model loaded) once, before either clock starts.

    python -m ingest bench-reindex                       # the bundled sample: 1% edited, 0.5% removed
    python -m ingest bench-reindex --limit 500 --edited 0.05
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ingest.embedders import Embedder, make_embedder
from ingest.jobs import run_ingest
from ingest.pipeline.summary import RunSummary
from ingest.settings import IngestSettings
from ingest.sources import SAMPLE, open_source, sample_rows

EDIT = "This sentence was added by an edit of the article."
_SENTENCE_END = re.compile(r"[.!?]\s+")


def edit_text(text: str, rng: random.Random) -> str:
    """`text` with a sentence inserted after one of its sentences, or at the end."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    at = rng.choice(ends) if ends else len(text)
    return f"{text[:at]}{EDIT} {text[at:]}" if at < len(text) else f"{text.rstrip()} {EDIT}"


def edit_snapshot(
    rows: list[dict[str, Any]], *, edited: float, removed: float, seed: int
) -> tuple[list[dict[str, Any]], int, int]:
    """A copy of `rows` with `edited` of them edited and `removed` of them removed
    (shares, rounded); returns it and the numbers edited and removed."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    n_removed, n_edited = round(len(rows) * removed), round(len(rows) * edited)
    gone, changed = set(order[:n_removed]), set(order[n_removed : n_removed + n_edited])
    snapshot = [
        dict(row, text=edit_text(row["text"], rng)) if i in changed else dict(row)
        for i, row in enumerate(rows)
        if i not in gone
    ]
    return snapshot, n_edited, n_removed


def _rows(settings: IngestSettings) -> list[dict[str, Any]]:
    if settings.source_name == SAMPLE:
        return sample_rows()[: settings.limit]
    return [dict(row) for row in open_source(settings.source_name, limit=settings.limit)]


def _write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def run_bench_reindex(
    settings: IngestSettings,
    *,
    edited: float = 0.01,
    removed: float = 0.005,
    seed: int = 0,
    embedder: Embedder | None = None,
) -> str:
    rows = _rows(settings)
    own = embedder is None
    embedder = embedder or make_embedder(settings.embedder)
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-bench-reindex-") as folder:
            base = Path(folder)
            snapshot, n_edited, n_removed = edit_snapshot(rows, edited=edited, removed=removed, seed=seed)
            run = replace(
                settings,
                limit=None,
                progress=False,
                dead_letter=str(base / "dead_letter.jsonl"),
                store=replace(
                    settings.store,
                    qdrant_path=str(base / "qdrant"),
                    qdrant_url=None,
                    state_dir=None,
                    collection="bench",
                ),
            )
            full = run_ingest(replace(run, source=_write(base / "a.jsonl", rows)), embedder=embedder)
            again = run_ingest(
                replace(run, source=_write(base / "b.jsonl", snapshot)), embedder=embedder, mode="reindex"
            )
    finally:
        if own:
            embedder.close()
    return report(
        full, again, articles=len(rows), edited=n_edited, removed=n_removed, seed=seed, model=embedder.spec.name
    )


def report(
    full: RunSummary, again: RunSummary, *, articles: int, edited: int, removed: int, seed: int, model: str
) -> str:
    def row(label: str, a: Any, b: Any) -> str:
        return f"{label:<22}{a:>14}{b:>14}"

    lines = [
        f"{articles:,} articles, model {model}; the second snapshot has {edited:,} edited "
        f"({edited / max(articles, 1):.1%}) and {removed:,} removed ({removed / max(articles, 1):.1%}), seed {seed}",
        row("", "full ingest", "reindex"),
        row("wall time (s)", f"{full.seconds:,.1f}", f"{again.seconds:,.1f}"),
        row("chunks embedded", f"{full.embedded:,}", f"{again.embedded:,}"),
        row("chunks reused", f"{full.reused:,}", f"{again.reused:,}"),
        row("points written", f"{full.points_written:,}", f"{again.points_written:,}"),
        row("points deleted", f"{full.points_deleted:,}", f"{again.points_deleted:,}"),
        row("articles unchanged", f"{full.unchanged:,}", f"{again.unchanged:,}"),
        f"reindex: {again.report()}",
        f"reindex / full ingest: {again.seconds / max(full.seconds, 1e-9):.1%} of the wall time, "
        f"{again.embedded / max(full.embedded, 1):.1%} of the chunks embedded",
    ]
    return "\n".join(lines)
