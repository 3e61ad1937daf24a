"""Which sources a collection was written from, noted in its manifest, so that what
the tool advises and what a reindex deletes follow what the user built.

A reindex makes a collection mirror one source: it deletes the articles that source
lacks. Pointed at the wrong source (the default sample, when the user's own file was
written into the same collection) it deletes the user's articles. So:

- every run notes its source; a reindex that deleted notes that its source is now
  the only one (`note_source`);
- a reindex given no --source is refused when the collection holds articles of a
  source other than the default (`check_reindex`);
- verify's advice is the `run` that wrote the collection, which deletes nothing,
  with the store's own flags (`rerun`), never a reindex.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ingest.errors import SettingsError
from ingest.settings import StoreSettings
from ingest.sources import SAMPLE
from ingest.state.manifest import Manifest

NOTE = "sources"


def source_key(spec: str) -> str:
    """A source as noted: a local file or folder by its absolute path, the others as given."""
    if spec == SAMPLE:
        return spec
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def noted_sources(manifest: Manifest) -> list[str]:
    """The sources written into the collection, the most recent last."""
    value = manifest.note(NOTE)
    return list(json.loads(value)) if value else []


def note_source(manifest: Manifest, source: str, *, only: bool = False) -> None:
    key = source_key(source)
    earlier = [] if only else [s for s in noted_sources(manifest) if s != key]
    manifest.set_note(NOTE, json.dumps(earlier + [key]))


def check_reindex(manifest: Manifest, given: str | None, collection: str) -> None:
    """Refuse a reindex given no source when the collection holds another source's articles."""
    others = [s for s in noted_sources(manifest) if s != SAMPLE]
    if given is None and others:
        raise SettingsError(
            f"{collection} was written from {', '.join(others)}: a reindex deletes the articles its source lacks, "
            f"and with no --source it reads the bundled sample. Nothing was changed: pass the source the collection "
            f"should mirror, e.g. `python -m ingest reindex --source {shlex.quote(others[-1])}`"
        )


def store_flags(settings: StoreSettings) -> str:
    """The flags that name this store and collection on a command line (none for the defaults)."""
    default = StoreSettings()
    flags = []
    if settings.qdrant_url:
        flags += ["--qdrant-url", settings.address]  # without credentials: those come from the environment
    elif settings.qdrant_path != default.qdrant_path:
        flags += ["--qdrant-path", settings.qdrant_path]
    if settings.collection != default.collection:
        flags += ["--collection", settings.collection]
    if settings.state_dir:
        flags += ["--state-dir", settings.state_dir]
    return "".join(f" {shlex.quote(flag)}" for flag in flags)


def rerun(sources: list[str], flags: str) -> list[str]:
    """The `run` commands that wrote a collection, for the advice after drift."""
    return [f"python -m ingest run --source {shlex.quote(source)}{flags}" for source in sources] or [
        f"python -m ingest run --source SOURCE{flags}"
    ]
