"""Move a collection between stores without embedding again: `copy` (any store to
any other, through the `Store` interface: an embedded folder to a server when a
user outgrows one process, a server to a folder for a laptop) and `migrate` (a
folder written by an earlier version, qdrant-client's local mode, into Qdrant Edge
in the same folder).

What moves: every point with its dense vector and payload, the collection's build
record, the alias that leads to it, and its manifest, so that the next run at the
destination embeds nothing it already holds. The lexical vectors are made again
at the destination from each point's text, with Qdrant's standard BM25: a
collection built with the earlier `words-v1` analyser comes out with standard
vectors, under the physical name its new build record gives it.

A copy writes points by id, so a stopped one is simply run again; the alias moves,
and the manifest is written, only once every point has landed and been counted.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ingest import lexical
from ingest.chunking import embed_text
from ingest.crashpoints import crashpoint
from ingest.definitions import definition_text
from ingest.edge import Edge, run_command
from ingest.embedders.base import Embedder
from ingest.errors import SettingsError, StoreError
from ingest.logs import setup_logging
from ingest.progress import Progress
from ingest.settings import STORE, StoreSettings, add_flags, from_args
from ingest.state.files import open_manifest, remove_state, state_dir
from ingest.state.rebuild import Target, physical_name
from ingest.store import Store, open_store
from ingest.store.base import StoredPoint
from ingest.store.edge import EdgeStore
from ingest.store.legacy import LegacyStore, is_legacy, remove_legacy
from schemas import CollectionSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CopyReport:
    name: str  # the name copied (an alias, usually)
    source: str  # the physical collection read
    target: str  # the physical collection written
    points: int
    articles: int  # manifest rows carried over (0: no manifest at the source)
    lexical_upgraded: bool  # the lexical vectors were remade with standard BM25
    seconds: float

    def line(self) -> str:
        upgraded = ", lexical vectors remade with Qdrant's standard BM25" if self.lexical_upgraded else ""
        manifest = f", manifest of {self.articles:,} articles" if self.articles else ", no manifest"
        return (
            f"copied {self.name} ({self.source} -> {self.target}): {self.points:,} points{manifest}"
            f"{upgraded} in {self.seconds:.1f} s"
        )


def target_spec(spec: CollectionSpec) -> CollectionSpec:
    """The build record at the destination: the same, with standard BM25 for words-v1."""
    if spec.sparse is not None and spec.sparse.tokenizer == lexical.WORDS_V1:
        return replace(spec, sparse=lexical.default_spec())
    return spec


def copy_collection(
    source: Store,
    target: Store,
    name: str,
    *,
    source_settings: StoreSettings,
    target_settings: StoreSettings,
    progress: bool = True,
    wanted: CollectionSpec | None = None,
    into: str | None = None,
    move_alias: bool = True,
    embedder: Embedder | None = None,
) -> CopyReport:
    """Copy what `name` leads to in `source` into `target` (see the module docstring).
    `wanted`: the build record to write (default: the source's, `target_spec`), into
    the physical collection `into` (default: the name that record gives it);
    `move_alias`: point `name` at the copy once it is complete; `embedder`: embeds the
    definitions of first chunks that have none where `wanted` keeps them (and nothing else;
    without it, points are copied as they are)."""
    started = time.perf_counter()
    resolved = source.resolve(name)
    if resolved.collection is None:
        raise StoreError(f"nothing is called {name!r} at {source.location}: pass the --collection to copy")
    reader = source.at(resolved.collection)
    spec = reader.read_spec()
    if spec is None:
        raise StoreError(
            f"collection {resolved.collection!r} at {source.location} was not built by this tool "
            "(no build record): nothing says how to search it"
        )
    wanted = wanted or target_spec(spec)
    upgraded = wanted != spec
    physical = into or resolved.collection
    if upgraded and into is None:
        physical = (
            physical_name(name, wanted)
            if physical == physical_name(name, spec)
            else f"{physical}-{wanted.fingerprint[:8]}"
        )
    writer = target.at(physical)
    writer.ensure_collection(wanted, bulk_load=True)
    title_prefix = bool(wanted.chunking.get("title_prefix", True))
    total = reader.count()
    shown = Progress(total, enabled=progress)
    copied = 0
    for points in reader.export_points():
        if wanted.definition is not None and embedder is not None:
            points = define_first_chunks(points, embedder)
        texts = [
            lexical.passage_text(
                embed_text(str(p.payload.get("title", "")), str(p.payload.get("text", "")), title_prefix),
                str(p.payload.get("text", "")),
                wanted.sparse,
            )
            for p in points
        ]
        writer.import_points(points, texts)
        copied += len(points)
        shown.tick(copied, "points")
    writer.flush()
    shown.tick(copied, "points", force=True)
    shown.close()
    landed = writer.count()
    if landed != total:
        raise StoreError(
            f"{physical!r} at {target.location} holds {landed:,} points after the copy, the source "
            f"{total:,}: run the copy again (it writes by id; nothing is lost)"
        )
    crashpoint("before-copy-manifest")
    articles = _copy_manifest(source_settings, resolved.collection, spec, target_settings, physical, wanted)
    writer.finish_bulk_load()
    crashpoint("before-copy-alias")
    if resolved.is_alias and move_alias:
        target.point_alias(name, physical, replace_alias=target.resolve(name).is_alias)
    return CopyReport(name, resolved.collection, physical, landed, articles, upgraded, time.perf_counter() - started)


def define_first_chunks(points: list[StoredPoint], embedder: Embedder) -> list[StoredPoint]:
    """`points`, each first chunk given a definition vector if it has none (embedded from its text;
    one the embedder refuses stays without, as in a run)."""
    missing = [i for i, p in enumerate(points) if p.definition is None and p.payload.get("chunk_index") == 0]
    if not missing:
        return points
    result = embedder.embed_passages([definition_text(str(points[i].payload.get("text", ""))) for i in missing])
    refused = {r.index for r in result.rejected}
    points = list(points)
    for row, i in enumerate(missing):
        if row not in refused:
            points[i] = replace(points[i], definition=result.vectors[row])
    return points


def _copy_manifest(
    source_settings: StoreSettings,
    source_collection: str,
    source_spec: CollectionSpec,
    target_settings: StoreSettings,
    target_collection: str,
    target_spec: CollectionSpec,
) -> int:
    """The manifest's rows, under the target's collection and fingerprint; 0 if the
    source has none (the next run then checks the copy point by point)."""
    folder = state_dir(source_settings)
    path = folder / f"{source_collection}.sqlite" if folder is not None else None
    if path is None or not path.is_file():
        log.warning(
            "no manifest for %s at the source: the next run compares the copy with its source article "
            "by article (nothing is embedded again that is unchanged)",
            source_collection,
        )
        return 0
    with open_manifest(source_settings, source_collection, source_spec.fingerprint) as manifest:
        if state_dir(target_settings) == folder and target_collection == source_collection:
            return manifest.count()  # the same file: nothing to carry
        with open_manifest(target_settings, target_collection, target_spec.fingerprint) as copy:
            copy.clear()
            copy.complete(manifest.rows())  # a page at a time, in one transaction
            return copy.count()


def lexical_only(store: Store, target: Target, spec: CollectionSpec) -> CollectionSpec | None:
    """The live collection's build record when it differs from `spec` in its lexical
    settings or its definition vectors alone (both with sparse vectors), else None:
    what a copy can change without embedding the chunks again."""
    if target.live is None or spec.sparse is None:
        return None
    live = store.at(target.live).read_spec()
    if live is None or live.sparse is None or replace(live, sparse=spec.sparse, definition=spec.definition) != spec:
        return None
    return live


def relexify(
    store: Store,
    target: Target,
    spec: CollectionSpec,
    settings: StoreSettings,
    *,
    progress: bool = True,
    embedder: Embedder | None = None,
) -> int:
    """Seed a rebuild whose only change is the lexical settings (a new BM25 default,
    say) or the definition vectors from the live collection: its points, dense vectors
    kept, lexical vectors made again from their text, definitions embedded by `embedder`
    where the live collection has none, and its manifest, so that the run embeds no chunk
    again and then switches as any rebuild does. Returns the points copied; 0 when this is
    not such a rebuild, or when the new collection is already being built."""
    if not target.rebuild or target.unaliased or lexical_only(store, target, spec) is None:
        return 0
    with open_manifest(settings, target.collection, spec.fingerprint) as manifest:
        if manifest.count():
            return 0  # a rebuild under way (a seeding stopped before its manifest is begun again)
    log.info(
        "%s differs from %s only in its lexical settings or definition vectors: copying its points with "
        "new BM25 vectors (and definitions, embedded from first chunks), no chunk embedded again",
        target.collection,
        target.live,
    )
    report = copy_collection(
        store,
        store,
        target.name,
        source_settings=settings,
        target_settings=settings,
        progress=progress,
        wanted=spec,
        into=target.collection,
        move_alias=False,
        embedder=embedder,
    )
    return report.points


def migrate_folder(path: str, *, progress: bool = True) -> list[CopyReport]:
    """Move every collection of a local-mode folder into Qdrant Edge in the same folder,
    with their aliases and manifests; the local-mode files are deleted once each
    collection's points are all in the new engine."""
    if not is_legacy(path):
        raise StoreError(
            f"{path} holds no store of an earlier version (no meta.json and collection/ from "
            "qdrant-client's local mode): nothing to migrate"
        )
    settings = StoreSettings(qdrant_path=path)
    legacy = LegacyStore.open(path)
    target = EdgeStore.open(path, collection="")
    reports = []
    try:
        aliases = legacy.aliases()
        named = set(aliases.values())
        for name in sorted(aliases) + [c for c in legacy.collections() if c not in named]:
            report = copy_collection(
                legacy, target, name, source_settings=settings, target_settings=settings, progress=progress
            )
            reports.append(report)
    finally:
        target.close()
        legacy.close()
    remove_legacy(path)
    for report in reports:
        if report.source != report.target:
            remove_state(settings, report.source)  # its rows now live under the new name
    return reports


def copy_between(
    source_settings: StoreSettings, target_settings: StoreSettings, *, progress: bool = True
) -> CopyReport:
    """`python -m ingest copy`: the collection `source_settings` names, into the target store."""
    if not source_settings.qdrant_url and is_legacy(source_settings.qdrant_path):
        raise StoreError(
            f"{source_settings.qdrant_path} was written by an earlier version: run `python -m ingest "
            f"migrate --qdrant-path {source_settings.qdrant_path}` first, then copy"
        )
    if (
        not source_settings.qdrant_url
        and not target_settings.qdrant_url
        and Path(source_settings.qdrant_path).resolve() == Path(target_settings.qdrant_path).resolve()
    ):
        raise StoreError(
            f"the source and the target are the same folder ({source_settings.qdrant_path}): pass another --to-path"
        )
    source = open_store(source_settings)
    try:
        target = open_store(target_settings)
        try:
            return copy_collection(
                source,
                target,
                source_settings.collection,
                source_settings=source_settings,
                target_settings=target_settings,
                progress=progress,
            )
        finally:
            target.close()
    finally:
        source.close()


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output; tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return parser


def copy_main(argv: Sequence[str] | None = None) -> int:
    """`python -m ingest copy`: exit 0 copied, 1 failed, 2 bad usage."""
    parser = _parser(
        "python -m ingest copy",
        "Copy a collection (what --collection leads to: points with their "
        "vectors and payloads, the build record, the alias and the manifest) from one store to "
        "another, embedding nothing. A stopped copy is run again.",
    )
    for side, other in (("from", "source"), ("to", "target")):
        parser.add_argument(f"--{side}-path", help=f"the {other} folder (embedded store)")
        parser.add_argument(
            f"--{side}-url",
            help=f"the {other} Qdrant server; its API key is read from "
            f"{'QDRANT_FROM_API_KEY' if side == 'from' else 'QDRANT_API_KEY'}",
        )
        parser.add_argument(
            f"--{side}-state-dir",
            help=f"the {other}'s manifests (default: beside a folder, ./ingest_state for a server)",
        )
    add_flags(parser, StoreSettings, (STORE,), only=("collection", "prefer_grpc"))

    def command(edge: Edge) -> int:
        args = parser.parse_args(argv)
        setup_logging(-1 if args.quiet else args.verbose)
        sides = [_side(args, side, key) for side, key in (("from", "QDRANT_FROM_API_KEY"), ("to", "QDRANT_API_KEY"))]
        edge.ready(args.verbose)
        print(copy_between(*sides, progress=not args.no_progress).line())
        return 0

    return run_command("python -m ingest copy", command)


def _side(args: argparse.Namespace, side: str, key: str) -> StoreSettings:
    path, url = getattr(args, f"{side}_path"), getattr(args, f"{side}_url")
    if bool(path) == bool(url):
        raise SettingsError(f"give one of --{side}-path and --{side}-url")
    env = {**os.environ, "QDRANT_API_KEY": os.environ.get(key, "")}  # each side's key from its own variable
    return replace(
        from_args(StoreSettings, args, env),
        qdrant_path=path or StoreSettings().qdrant_path,
        qdrant_url=url,
        state_dir=getattr(args, f"{side}_state_dir"),
    )


def migrate_main(argv: Sequence[str] | None = None) -> int:
    """`python -m ingest migrate`: exit 0 migrated, 1 failed."""
    parser = _parser(
        "python -m ingest migrate",
        "Move a store folder written by an earlier version "
        "(qdrant-client's local mode) into Qdrant Edge, in place: every collection with its "
        "vectors, aliases and manifest, embedding nothing; the old files are deleted once every "
        "point is in the new engine. Lexical vectors are remade with Qdrant's standard BM25.",
    )
    add_flags(parser, StoreSettings, (STORE,), only=("qdrant_path",))

    def command(edge: Edge) -> int:
        args = parser.parse_args(argv)
        setup_logging(-1 if args.quiet else args.verbose)
        edge.ready(args.verbose)
        reports = migrate_folder(args.qdrant_path, progress=not args.no_progress)
        for report in reports:
            print(report.line())
        print(f"{args.qdrant_path}: {len(reports)} collection(s) now in Qdrant Edge")
        return 0

    return run_command("python -m ingest migrate", command)
