"""`python -m ingest` as its user runs it, a subprocess, embedding through the TEI
stand-in, for the fault campaign (tests/test_store_faults.py, tests/test_disk_faults.py):
what a killed, cut-off or intruded-on run left, and what the command run again makes
of it, read back through the store interface."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.chunking import Chunker, ChunkingSettings
from ingest.rehearsal.tei import TEIServer
from ingest.settings import StoreSettings
from ingest.store import open_live
from schemas import Article, PointPayload

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 8
CHUNK = 300


@pytest.fixture(scope="module")
def tei():
    """The TEI stand-in the runs embed through (deterministic vectors), one per test module."""
    with TEIServer(model_id="BAAI/bge-small-en-v1.5", record_texts=False) as server:
        yield server


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def expected(rows: list[dict], chunk: int = CHUNK) -> dict[str, dict]:
    """Every point a finished run of `rows` holds: id -> payload."""
    chunker = Chunker(ChunkingSettings(max_chars=chunk), max_tokens=512)
    return {
        c.point_id: PointPayload.build(a, c).to_dict() for a in map(Article.from_row, rows) for c in chunker.chunks(a)
    }


def env(crash_at: str | None = None) -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(ROOT), "USE_TORCH": "0"}  # datasets need not import torch
    out.pop("INGEST_CRASH_AT", None)
    if crash_at:
        out["INGEST_CRASH_AT"] = crash_at
    return out


def run_args(tei_url: str, source: str = "rows.jsonl", *, chunk: int = CHUNK, qdrant: str = "qdrant") -> list[str]:
    return [
        "run",
        "--source",
        source,
        "--embedder",
        "tei",
        "--tei-url",
        tei_url,
        "--qdrant-path",
        qdrant,
        "--collection",
        "wiki",
        "--window",
        str(WINDOW),
        "--chunk-size",
        str(chunk),
        "--no-progress",
        "--dead-letter",
        "dl.jsonl",
        "-q",
    ]


def ingest(
    cwd: Path,
    args: list[str],
    *,
    crash_at: str | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        cwd=cwd,
        env=env(crash_at),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def killed(done: subprocess.CompletedProcess) -> bool:
    return done.returncode == -signal.SIGKILL


def stored(path: Path, collection: str = "wiki") -> dict[str, dict]:
    """Every point of what `collection` leads to in the folder `path`: id -> payload."""
    store = open_live(StoreSettings(qdrant_path=str(path), collection=collection))
    try:
        ids = [point.id for page in store.export_points() for point in page]
        assert len(ids) == len(set(ids))
        return store.payloads(ids)
    finally:
        store.close()


def verify(cwd: Path, qdrant: str = "qdrant") -> subprocess.CompletedProcess:
    return ingest(cwd, ["verify", "--qdrant-path", qdrant, "--collection", "wiki", "-q"])
