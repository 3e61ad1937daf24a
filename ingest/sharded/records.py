"""The sharded load's memory across attempts: a folder on the Volume per run, one
JSON file per finished shard, written once its points are all acknowledged: its
`ShardResult` and its articles' manifest rows. A driver started again skips the
shards recorded there; at the end the records become the collection's manifest."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable

from ingest.settings import IngestSettings
from ingest.sharded.shard import ShardResult, ingest_shard
from ingest.state.manifest import Manifest, ManifestRow

log = logging.getLogger(__name__)


def run_key(config: str, rows: int, shard_size: int) -> str:
    """Names a sharded load: the same command started again resumes it."""
    return f"{config}-{rows}-{shard_size}"


@dataclass(frozen=True, slots=True)
class ShardRecords:
    folder: Path

    def path(self, start: int, stop: int) -> Path:
        return self.folder / f"{start:012d}-{stop:012d}.json"

    def write(self, result: ShardResult, rows: Iterable[ManifestRow]) -> Path:
        """Record a finished shard (atomically: a reader sees all of it or nothing)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {
            "result": result.to_dict(),
            "articles": [[r.article_id, r.article_hash, r.chunk_count, r.rejected] for r in rows],
        }
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

    def finished(self) -> list[ShardResult]:
        return [ShardResult.from_dict(record["result"]) for record in self._records()]

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


def ingest_recorded_shard(
    dataset_path: str,
    start: int,
    stop: int,
    *,
    settings: IngestSettings,
    records: ShardRecords | None,
    commit: Callable[[], None] | None = None,
    lock: ContextManager | None = None,
    **shard: Any,
) -> ShardResult:
    """`ingest_shard` (`shard`: its `embedder` and `store`), then its record (only once
    it all landed, and never for a shard that failed), and `commit` (the Volume's), the
    two under `lock`: other shards of the container commit too."""
    manifest = Manifest.memory()
    try:
        result = ingest_shard(dataset_path, start, stop, settings=settings, manifest=manifest, **shard)
        if records is not None:
            with lock or contextlib.nullcontext():
                records.write(result, manifest.rows())
                if commit is not None:
                    commit()
    finally:
        manifest.close()
    return result
