"""The scheduled incremental reindex, in plain Python: which dump to reindex
against (`newest_snapshot`), the manifests kept on a Volume (`VolumeState`), and
the reindex of a live collection on one container (`reindex_snapshot`)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from ingest.embedders import Embedder
from ingest.errors import SettingsError
from ingest.pipeline.summary import RunSummary
from ingest.settings import IngestSettings
from ingest.state.manifest import Manifest
from ingest.sync import run_ingest

_SNAPSHOT_DATE = re.compile(r"^(\d{8})")


def newest_snapshot(configs: Sequence[str]) -> str:
    """The configured dump with the latest date (`20231101.en` is 2023-11-01)."""
    dated = [(m.group(1), c) for c in configs if (m := _SNAPSHOT_DATE.match(c))]
    if not dated:
        raise SettingsError(f"no snapshot in {list(configs)!r} starts with a date (YYYYMMDD), like 20231101.en")
    return max(dated)[1]


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


def reindex_snapshot(dataset_path: str, settings: IngestSettings, *, state: VolumeState | None = None,
                     embedder: Embedder | None = None) -> RunSummary:
    """The incremental reindex of a live collection against the dump saved at
    `dataset_path`. Its manifest lives on the Volume (`state`); it refuses to
    build a whole collection on one container (a first build, or other settings:
    that is the sharded load's work)."""
    settings = replace(settings, source=dataset_path)
    if state is not None:
        state.pull()
        settings = replace(settings, store=replace(settings.store, state_dir=str(state.local_dir)))
    summary = run_ingest(settings, embedder=embedder, mode="reindex", in_place_only=True,
                         checkpoint=state.checkpoint if state is not None else None)
    if state is not None:
        state.push_removals()
    return summary
