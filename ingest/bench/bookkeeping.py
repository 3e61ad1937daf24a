"""`python -m ingest bench-bookkeeping`: the bookkeeping paths' time and peak memory at the
full corpus's size.

Builds a synthetic store and manifest of N one-chunk articles (default 6,400,000, English
Wikipedia's count) without embedding anything: each article's point is written through
the store's write interface (`upsert_pairs`: payload, BM25 vector and a cheap
deterministic dense vector) and its manifest row directly, exactly as a run would have
recorded it; the source a reindex reads (the same N articles, JSON lines) beside them.
Then each path runs in a process of its own, so that its peak resident memory (the
kernel's account of the child, `os.wait4`) is its own:

- `open`: the store opened and its points counted, nothing else (the baseline: the
  embedded engine's own memory for the collection, which the paths below include);
- `verify`: the manifest against every point (`python -m ingest verify`);
- `repair`: the manifest rebuilt from the points (`python -m ingest repair`);
- `reindex`: an unchanged reindex through the real run path (`run_ingest`, mode
  reindex, with the same source): every article read, hashed and looked up, nothing
  embedded (a counting fake embedder says so) and nothing deleted;
- `copy`: the collection with its vectors and manifest into a second folder
  (`python -m ingest copy`), which is deleted afterwards.

The store is the embedded default (Qdrant Edge), whose engine runs in the measured
process: its memory counts in every row, the `open` row says how much of it is the
engine's. In production the store is a Qdrant server in another process, and a copy's
target too; here a copy holds two engines, the source's and the target's. The dense
vectors have `--dimension` (default 8) components rather than a model's 384: nothing
but the copy reads them, and 6.4M float32 vectors of 384 would take 9.8 GB of the
engine's memory and disk that the bookkeeping does not use. One chunk per article: the
manifest and the per-article state grow with articles; the scans of `verify`, `repair`
and `copy` take time in proportion to points (a real corpus has several per article).

    python -m ingest bench-bookkeeping                          # 6,400,000 articles
    python -m ingest bench-bookkeeping --articles 200000 --folder /tmp/bk   # keep the build, reuse it

Exit codes: 0 measured; 1 failed (or a path did not do what it should); 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ingest.chunking import ChunkingSettings
from ingest.edge import command
from ingest.embedders.fake import FakeEmbedder
from ingest.errors import SettingsError, StateError
from ingest.jobs import collection_spec, make_chunker, repair_manifest, run_ingest, verify_collection
from ingest.settings import EmbedderSettings, IngestSettings, StoreSettings
from ingest.state.files import open_manifest
from ingest.state.manifest import ManifestRow
from ingest.state.provenance import note_source
from ingest.state.rebuild import physical_name
from ingest.store import open_store
from ingest.store.base import ChunkRef, Resolved, StoredPoint
from ingest.store.points import point_payloads
from ingest.transfer import copy_between, copy_collection
from schemas import Article, CollectionSpec, ModelSpec

PROG = "python -m ingest bench-bookkeeping"
ARTICLES = 6_400_000  # English Wikipedia's articles
DIMENSION = 8
BATCH = 2048  # articles per write while building
PATHS = ("open", "verify", "repair", "reindex", "copy")
STORES = ("edge", "server")
BUILT = "built.json"  # what a folder holds, written once the build is complete
WORDS = (
    "river valley town church school station county district village island mountain lake forest "
    "album song band film series novel author painter player team league season election party "
    "minister court army battle war ship railway bridge castle temple museum university species "
    "genus family plant bird fish insect mineral planet star galaxy theory language dialect"
).split()


def embedder(dimension: int) -> FakeEmbedder:
    """A counting embedder of `dimension` (what the collection's build record names): the
    unchanged reindex must not call it."""
    return FakeEmbedder(ModelSpec("bench/bookkeeping", dimension, 512))


def settings_for(folder: Path) -> IngestSettings:
    """The settings every path uses: the folder's store, its source, the default chunking."""
    return IngestSettings(
        source=str(folder / "articles.jsonl"),
        progress=False,
        dead_letter=str(folder / "dead-letters.jsonl"),
        chunking=ChunkingSettings(),
        embedder=EmbedderSettings(embedder="local"),  # not used: every path is given its embedder
        store=StoreSettings(qdrant_path=str(folder / "store"), collection="wiki"),
    )


def article_row(i: int) -> dict[str, str]:
    """Article `i`: a title, an address and a sentence of a few hundred characters, one chunk."""
    words = [WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, 25)]
    return {
        "id": str(i + 1),
        "url": f"https://en.wikipedia.org/wiki/Synthetic_{i + 1}",
        "title": f"Synthetic {i + 1}",
        "text": f"Synthetic {i + 1} is a {' '.join(words[:8])}. It has {' '.join(words[8:])}.",
    }


class SyntheticStore:
    """What the bookkeeping asks of a Qdrant server, answered from nothing: the points of
    `articles` synthetic articles (`article_row`), made as they are read, and writes
    counted and dropped. It stands for a server in another process (production's store),
    so that the measured process holds the bookkeeping alone; `sink=True`: an empty
    collection that takes a copy's points."""

    def __init__(self, articles: int, spec: CollectionSpec, chunker: Any, *, sink: bool = False) -> None:
        self.articles, self.spec, self.chunker, self.sink = articles, spec, chunker, sink
        self.collection = physical_name("wiki", spec)
        self.location = "synthetic"
        self.written = 0
        self.created = False

    def _pairs(self, start: int, stop: int) -> list:
        pairs = []
        for i in range(start, stop):
            article = Article.from_row(article_row(i))
            pairs += [(article, chunk) for chunk in self.chunker.chunks(article)]
        return pairs

    # -- what the jobs ask of a store
    def resolve(self, name: str) -> Resolved:
        return Resolved(name, self.collection, name != self.collection)

    def at(self, collection: str) -> SyntheticStore:
        return self

    def read_spec(self) -> CollectionSpec:
        return self.spec

    def ensure_collection(self, spec: CollectionSpec, *, bulk_load: bool = False) -> bool:
        created, self.created = self.sink and not self.created, True
        return created

    def count(self) -> int:
        return self.written if self.sink else self.articles

    def count_excluding(self, article_ids: Sequence[str]) -> int:
        return self.count() - len([i for i in article_ids if 0 < int(i) <= self.articles])

    def scan_chunks(self, batch: int = 2048) -> Iterator[list[ChunkRef]]:
        for start in range(0, self.articles, batch):
            pairs = self._pairs(start, min(start + batch, self.articles))
            yield [ChunkRef(a.id, c.chunk_index, a.content_hash) for a, c in pairs]

    def export_points(self, batch: int = 512) -> Iterator[list[StoredPoint]]:
        rng = np.random.default_rng(0)
        for start in range(0, self.articles, batch):
            ids, payloads = point_payloads(self._pairs(start, min(start + batch, self.articles)))
            vectors = rng.standard_normal((len(ids), self.spec.dimension)).astype(np.float32)
            yield [StoredPoint(i, v, p) for i, v, p in zip(ids, vectors, payloads)]

    def import_points(self, points: Sequence[StoredPoint], texts: Sequence[str]) -> None:
        self.written += len(points)

    def stored_vectors(self, point_ids: Sequence[str]) -> dict:
        raise AssertionError("an unchanged reindex reads no stored vector")

    def upsert_pairs(self, pairs: Sequence, vectors: np.ndarray, definitions: Any = None) -> None:
        raise AssertionError("an unchanged reindex writes nothing")

    def delete_chunks(self, selections: Sequence) -> int:
        return 0

    def delete_articles(self, article_ids: Sequence[str]) -> int:
        raise AssertionError("an unchanged reindex deletes nothing")

    def point_alias(self, alias: str, collection: str, *, replace_alias: bool) -> None:
        pass

    def flush(self) -> None:
        pass

    def finish_bulk_load(self, *, wait_seconds: float = 0.0) -> bool:
        return True

    def close(self) -> None:
        pass


def build(folder: Path, articles: int, dimension: int, kind: str) -> dict:
    """The store (for `kind` "edge"), its manifest and the source, in `folder` (the child's side)."""
    started = time.perf_counter()
    settings = settings_for(folder)
    fake = embedder(dimension)
    spec = collection_spec(settings, fake)
    chunker = make_chunker(settings, fake)
    physical = physical_name(settings.store.collection, spec)
    rng = np.random.default_rng(0)
    store = open_store(settings.store) if kind == "edge" else SyntheticStore(articles, spec, chunker, sink=True)
    try:
        written = store.at(physical)
        written.ensure_collection(spec, bulk_load=True)
        with (
            open_manifest(settings.store, physical, spec.fingerprint) as manifest,
            open(settings.source, "w", encoding="utf-8") as source,
        ):
            for start in range(0, articles, BATCH):
                rows = [article_row(i) for i in range(start, min(start + BATCH, articles))]
                source.writelines(json.dumps(row) + "\n" for row in rows)
                pairs, done = [], []
                for position, row in enumerate(rows, start + 1):
                    article = Article.from_row(row, position=position)
                    chunks = list(chunker.chunks(article))
                    pairs += [(article, chunk) for chunk in chunks]
                    done.append(ManifestRow(article.id, article.content_hash, len(chunks)))
                if kind == "edge":
                    vectors = rng.standard_normal((len(pairs), dimension)).astype(np.float32)
                    written.upsert_pairs(pairs, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
                manifest.complete(done)
            written.flush()
            note_source(manifest, settings.source)
        store.point_alias(settings.store.collection, physical, replace_alias=False)
    finally:
        store.close()
    record = {"articles": articles, "dimension": dimension, "store": kind, "seconds": time.perf_counter() - started}
    (folder / BUILT).write_text(json.dumps(record))
    return record


def measure(path: str, folder: Path, articles: int, dimension: int, kind: str) -> dict:
    """One path over the built folder, checked (the child's side)."""
    settings = settings_for(folder)
    fake = embedder(dimension)
    server = None
    if kind == "server":
        spec = collection_spec(settings, fake)
        server = SyntheticStore(articles, spec, make_chunker(settings, fake))
    started = time.perf_counter()
    detail = ""
    if path == "open":
        store = server or open_store(settings.store)
        try:
            detail = f"{store.at(store.resolve(settings.store.collection).collection).count():,} points"
        finally:
            store.close()
    elif path == "verify":
        report = verify_collection(settings.store, store=server)
        if not report.in_sync:
            raise StateError("verify found drift in the synthetic store: " + "; ".join(report.lines()))
        detail = f"in sync, {report.points:,} points"
    elif path == "repair":
        repaired = repair_manifest(settings.store, store=server)
        if repaired.pending or repaired.done != repaired.points:
            raise StateError("repair did not adopt every article: " + repaired.line())
        detail = f"{repaired.done:,} articles adopted"
    elif path == "reindex":
        summary = run_ingest(settings, embedder=fake, store=server, mode="reindex")
        if fake.calls or summary.points_written or summary.deleted or summary.unchanged != summary.articles:
            raise StateError("the unchanged reindex did some work: " + summary.line())
        detail = f"{summary.unchanged:,} unchanged, nothing embedded or deleted"
    elif path == "copy":
        target = folder / "copy"
        try:
            if server is None:
                report = copy_between(settings.store, StoreSettings(qdrant_path=str(target)), progress=False)
            else:
                sink = SyntheticStore(articles, server.spec, server.chunker, sink=True)
                report = copy_collection(
                    server,
                    sink,
                    settings.store.collection,
                    source_settings=settings.store,
                    target_settings=StoreSettings(qdrant_path=str(target)),
                    progress=False,
                )
        finally:
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(folder / "copy-state", ignore_errors=True)
        detail = f"{report.points:,} points, manifest of {report.articles:,} articles"
    else:
        raise SettingsError(f"unknown path {path!r}: one of {', '.join(PATHS)}")
    return {"path": path, "seconds": time.perf_counter() - started, "detail": detail}


def run_child(args: Sequence[str], what: str) -> dict:
    """`python -m ingest.bench.bookkeeping --child ARGS` and its peak resident memory (os.wait4)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "ingest.bench.bookkeeping", "--child", *args], stdout=subprocess.PIPE, text=True
    )
    with child.stdout:
        out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if child.returncode != 0:
        raise SettingsError(f"{what} failed (exit {child.returncode}); run it with -v")
    row = json.loads(out.strip().splitlines()[-1])
    row["peak_rss_bytes"] = usage.ru_maxrss * 1024  # kilobytes on Linux
    return row


def table(rows: Sequence[dict]) -> str:
    header = ("path", "time", "peak RSS", "")
    cells = [
        (r["path"], f"{r['seconds']:,.1f} s", f"{r['peak_rss_bytes'] / 2**30:.2f} GiB", r.get("detail", ""))
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i in (0, 3) else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines += [
        "  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=ARTICLES, help="one-chunk articles (default %(default)s)")
    parser.add_argument(
        "--dimension", type=int, default=DIMENSION, help="the dense vectors' components (default %(default)s)"
    )
    parser.add_argument(
        "--store",
        choices=STORES,
        default="edge",
        help="edge: the embedded store, its engine in the measured process (default); server: a stand-in for a "
        "Qdrant server in another process, the points made as they are read and writes dropped, so that the "
        "measured process holds the bookkeeping alone",
    )
    parser.add_argument(
        "--paths", nargs="+", choices=PATHS, default=list(PATHS), help="what to measure (default: all, in this order)"
    )
    parser.add_argument(
        "--folder",
        help="build in this folder and keep it; a folder already built for the same --articles and --dimension "
        "is used as it is (default: a temporary folder, deleted)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.articles < 1 or args.dimension < 2:
        raise SettingsError("--articles must be at least 1 and --dimension at least 2")


def _measure_all(args: argparse.Namespace, folder: Path) -> list[dict]:
    rows = []
    built = folder / BUILT
    wanted = {"articles": args.articles, "dimension": args.dimension, "store": args.store}
    if built.is_file() and {k: json.loads(built.read_text()).get(k) for k in wanted} == wanted:
        print(f"using the store built in {folder}", file=sys.stderr, flush=True)
    else:
        if any(folder.iterdir()):
            raise SettingsError(f"{folder} holds something other than a complete build: give an empty --folder")
        row = run_child(["build", str(folder), str(args.articles), str(args.dimension), args.store], "the build")
        row.update(path="build", detail="not bookkeeping: the synthetic store, manifest and source written")
        rows.append(row)
        print(f"built in {row['seconds']:,.0f} s", file=sys.stderr, flush=True)
    for path in args.paths:
        rows.append(run_child([path, str(folder), str(args.articles), str(args.dimension), args.store], path))
        print(f"{path} measured", file=sys.stderr, flush=True)
    return rows


def _bench(args: argparse.Namespace) -> int:
    if args.folder:
        folder = Path(args.folder)
        folder.mkdir(parents=True, exist_ok=True)
        rows = _measure_all(args, folder)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-bookkeeping-") as scratch:
            rows = _measure_all(args, Path(scratch))
    where = (
        "in the embedded store (its engine in the measured process)"
        if args.store == "edge"
        else "in a stand-in for a Qdrant server in another process (the measured process: the bookkeeping alone)"
    )
    print(
        f"{args.articles:,} one-chunk articles {where}, dense vectors of {args.dimension}, {os.cpu_count()} cores; "
        "each path in a process of its own"
    )
    print(table(rows))
    return 0


main = command(PROG, build_parser, _bench, check=_check)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # one step in this process: a JSON line on stdout
        step, scratch, size, dim, kind = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        print(
            json.dumps(build(scratch, size, dim, kind) if step == "build" else measure(step, scratch, size, dim, kind))
        )
        sys.exit(0)
    sys.exit(main())
