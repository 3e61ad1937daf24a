"""The ingest pipeline: source rows → articles → chunks → vectors → Qdrant points,
incremental and resumable through the manifest (`ingest.manifest`).

Three stages overlap: this thread reads, checks and chunks, one thread embeds, one
writes. Bounded queues between them keep memory flat whatever the corpus size,
and a failure in any stage stops the others and is raised here.

- Change detection, before any embedding: articles are looked up in the manifest
  a batch at a time, and one whose hash matches its row is skipped before it is
  even chunked. Only new and changed articles cost writes, so a run that was
  stopped and started again skips what it had finished. Inside a changed article
  (or one a stopped run left pending), a chunk whose hash is the stored point's at
  the same index keeps its stored vector: only changed chunks are embedded.
- Completion, after the writes: the writer marks an article pending before its
  first point goes out; once the window holding its last chunk is acknowledged it
  deletes the article's stale points (chunks at or past its new count, and chunks
  the embedder refused this time), and only then writes its manifest row.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import numpy as np

from ingest.chunking import Chunker
from ingest.crashpoints import crashpoint
from ingest.deadletter import DeadLetter, DeadLetterFile
from ingest.embedders.base import Embedder, PassageEmbeddings
from ingest.manifest import Manifest, ManifestRow
from ingest.progress import Progress
from ingest.store import ChunkSelection, QdrantStore
from schemas import Article, Chunk, ValidationError

log = logging.getLogger(__name__)

_DONE = object()
LOOKUP_BATCH = 256  # articles per manifest lookup


@dataclass(slots=True)
class RunSummary:
    articles: int = 0
    skipped_empty: int = 0
    invalid: int = 0
    chunks: int = 0  # chunks written: embedded or reused
    reused: int = 0  # chunks of changed articles that kept their stored vector
    characters: int = 0
    points_written: int = 0
    rejected_chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    dead_letter: str | None = None
    added: int = 0  # articles: new to the collection
    changed: int = 0  # in it, in another version (or left pending by a stopped run)
    unchanged: int = 0  # in it as they are: skipped
    deleted: int = 0  # in it, absent from the snapshot: deleted
    points_deleted: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.invalid + self.rejected_chunks

    @property
    def embedded(self) -> int:
        return self.chunks - self.reused

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        share = 100 * self.embed_seconds / self.seconds if self.seconds else 0.0
        text = (
            f"articles read {self.articles:,}, skipped (empty) {self.skipped_empty:,}, "
            f"invalid {self.invalid:,}, chunks {self.chunks:,}, points written {self.points_written:,}, "
            f"rejected chunks {self.rejected_chunks:,}, {self.seconds:,.1f} s, "
            f"{self.chunks_per_second:,.1f} chunks/s, {self.characters / max(self.seconds, 1e-9):,.0f} chars/s, "
            f"embedder {share:.0f}% of wall time"
        )
        if self.dead_letter:
            text += f"; dead letters in {self.dead_letter}"
        return text

    def report(self) -> str:
        """What changed: the line `run` and `reindex` end with."""
        return (
            f"articles added {self.added:,}, changed {self.changed:,}, unchanged {self.unchanged:,}, "
            f"deleted {self.deleted:,}; chunks embedded {self.embedded:,}, reused {self.reused:,}; points written "
            f"{self.points_written:,}, deleted {self.points_deleted:,}; {self.seconds:,.1f} s"
        )


Pair = tuple[Article, Chunk]


def articles_from_rows(
    rows: Iterable[dict], summary: RunSummary, dead_letters: DeadLetterFile, invalid_ids: list[str] | None = None
) -> Iterator[Article]:
    """Validate rows; an invalid one is dead-lettered and counted (its id, if it has
    one, added to `invalid_ids`), and the run goes on."""
    for position, row in enumerate(rows):
        summary.articles += 1
        try:
            article = Article.from_row(row, position=position)
        except ValidationError as exc:
            summary.invalid += 1
            if invalid_ids is not None and row.get("id") not in (None, ""):
                invalid_ids.append(str(row["id"]))
            log.warning("skipping %s", exc)
            dead_letters.write(
                DeadLetter("article", str(row.get("id")) if row.get("id") is not None else None,
                           None, None, str(exc), row.get("title") if isinstance(row.get("title"), str) else None)
            )
            continue
        if not article.text.strip():
            summary.skipped_empty += 1
            continue
        yield article


@dataclass(frozen=True, slots=True)
class Finished:
    """An article all of whose chunks are in this window or an earlier one."""

    article: Article
    article_hash: str
    previous: ManifestRow | None
    chunk_count: int


@dataclass(slots=True)
class Window:
    """Chunks for one embedder call (less those with a stored vector to reuse), and
    the articles whose last chunk they hold."""

    pairs: list[Pair] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)
    reused: dict[int, np.ndarray] = field(default_factory=dict)  # position in `pairs` -> vector

    def article_ids(self) -> list[str]:
        return list(dict.fromkeys([a.id for a, _ in self.pairs] + [f.article.id for f in self.finished]))


def windows(articles: Iterable[Article], chunker: Chunker, size: int, summary: RunSummary,
            manifest: Manifest, store: QdrantStore, *, track_seen: bool = False) -> Iterator[Window]:
    """Chunks of the new and changed articles, in windows of `size` (the last one
    may be smaller, never dropped); unchanged articles are counted and skipped."""
    window = Window()

    def add(article: Article, chunk: Chunk, vector: np.ndarray | None) -> Iterator[Window]:
        nonlocal window
        if vector is not None:
            window.reused[len(window.pairs)] = vector
            summary.reused += 1
        else:
            summary.characters += len(chunk.embed_text)  # what the embedder reads
        window.pairs.append((article, chunk))
        summary.chunks += 1
        if len(window.pairs) >= size:
            yield window
            window = Window()

    for batch in _batches(articles, LOOKUP_BATCH):
        ids = [a.id for a in batch]
        known = manifest.lookup(ids)
        if track_seen:
            manifest.mark_seen(ids)
        revisited: list[tuple[Article, str, ManifestRow, list[Chunk]]] = []
        for article in batch:
            digest = article.content_hash
            previous = known.get(article.id)
            if previous is not None and previous.matches(digest):
                summary.unchanged += 1
                continue
            if previous is None or previous.article_hash is None:
                summary.added += 1
            else:
                summary.changed += 1
            if previous is not None:  # points may exist: chunked now, checked against them below
                revisited.append((article, digest, previous, list(chunker.chunks(article))))
                continue
            count = 0
            for chunk in chunker.chunks(article):  # lazily: an article may be megabytes
                yield from add(article, chunk, None)
                count += 1
            window.finished.append(Finished(article, digest, None, count))
        if not revisited:
            continue
        stored = store.stored_vectors([c.point_id for *_, chunks in revisited for c in chunks])
        for article, digest, previous, chunks in revisited:
            for chunk in chunks:
                kept = stored.get(chunk.point_id)
                yield from add(article, chunk, kept[1] if kept and kept[0] == chunk.content_hash else None)
            window.finished.append(Finished(article, digest, previous, len(chunks)))
    if window.pairs or window.finished:
        yield window


def _batches(items: Iterable[Article], size: int) -> Iterator[list[Article]]:
    batch: list[Article] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def stale_chunks(finished: Finished, refused: list[int]) -> ChunkSelection | None:
    """Points of an earlier version that the new one does not overwrite: chunks at
    or past its new count, and the chunks refused this time."""
    previous = finished.previous
    if previous is None:
        return None  # never written: nothing can be stale
    unknown = previous.pending or previous.chunk_count is None  # a stopped run may have written anything
    shrunk = unknown or previous.chunk_count > finished.chunk_count
    old = [i for i in refused if unknown or i < previous.chunk_count]
    if not shrunk and not old:
        return None
    return ChunkSelection(finished.article.id, finished.chunk_count if shrunk else None, tuple(old))


def _embed_window(embedder: Embedder, window: Window) -> PassageEmbeddings:
    """Vectors for every chunk of the window: the reused ones as stored, the others embedded."""
    if not window.reused:
        return embedder.embed_passages([chunk.embed_text for _, chunk in window.pairs])
    todo = [i for i in range(len(window.pairs)) if i not in window.reused]
    vectors = np.empty((len(window.pairs), embedder.spec.dimension), dtype=np.float32)
    for i, vector in window.reused.items():
        vectors[i] = vector
    rejected = []
    if todo:
        result = embedder.embed_passages([window.pairs[i][1].embed_text for i in todo])
        vectors[todo] = result.vectors
        rejected = [replace(r, index=todo[r.index]) for r in result.rejected]
    return PassageEmbeddings(vectors, rejected)


class _Stage(threading.Thread):
    """A worker thread that takes items from `inbox` until the sentinel.

    It always consumes its inbox to the end, so putting into it never blocks for
    good: after its own failure it discards, and a stage with `skip_when_stopped`
    discards once the run is stopping (no point embedding what will not be written).
    The writer has it off: what was embedded before a failure upstream still lands."""

    def __init__(self, name: str, inbox: queue.Queue, work, stop: threading.Event,
                 *, skip_when_stopped: bool) -> None:
        super().__init__(name=name, daemon=True)
        self.inbox, self.work, self.stop, self.skip = inbox, work, stop, skip_when_stopped
        self.error: BaseException | None = None

    def run(self) -> None:
        while (item := self.inbox.get()) is not _DONE:
            if self.error is not None or (self.skip and self.stop.is_set()):
                continue
            try:
                self.work(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.error = exc
                self.stop.set()


def run_pipeline(
    rows: Iterable[dict],
    *,
    chunker: Chunker,
    embedder: Embedder,
    store: QdrantStore,
    dead_letters: DeadLetterFile,
    window: int = 512,
    progress: Progress | None = None,
    manifest: Manifest | None = None,
    track_seen: bool = False,
) -> RunSummary:
    """Ingest the new and changed articles of `rows` into `store`, recording them in
    `manifest` (a throw-away one by default: then every article is new). With
    `track_seen`, the manifest remembers the ids met, for deleting the others after.
    Returns the run's counts and timings."""
    summary = RunSummary()
    progress = progress or Progress(None, enabled=False)
    manifest = manifest or Manifest.memory()
    stop = threading.Event()
    to_embed: queue.Queue = queue.Queue(maxsize=2)
    to_write: queue.Queue = queue.Queue(maxsize=2)
    in_progress: set[str] = set()  # marked pending, row not yet written
    refused: dict[str, list[int]] = {}  # chunk indices refused, per article in progress
    started = time.perf_counter()

    def embed(item: Window) -> None:
        result = None
        if item.pairs:
            t0 = time.perf_counter()
            result = _embed_window(embedder, item)
            summary.embed_seconds += time.perf_counter() - t0
        to_write.put((item, result))

    def write(item: tuple[Window, PassageEmbeddings | None]) -> None:
        window_, result = item
        fresh = [i for i in window_.article_ids() if i not in in_progress]
        if fresh:
            manifest.mark_pending(fresh)
            in_progress.update(fresh)
        pairs = window_.pairs
        keep = list(range(len(pairs)))
        if result is not None and result.rejected:
            rejected = {r.index: r for r in result.rejected}
            for index, rejection in rejected.items():
                article, chunk = pairs[index]
                dead_letters.write(DeadLetter("chunk", article.id, chunk.chunk_index, rejection.status,
                                              rejection.message, article.title))
                refused.setdefault(article.id, []).append(chunk.chunk_index)
            summary.rejected_chunks += len(rejected)
            keep = [i for i in keep if i not in rejected]
        crashpoint("before-upsert")
        if keep:
            t0 = time.perf_counter()
            store.upsert_pairs([pairs[i] for i in keep], result.vectors[keep])
            summary.write_seconds += time.perf_counter() - t0
            summary.points_written += len(keep)
        if window_.finished:
            finish(window_.finished)
        progress.update(summary.articles, summary.chunks, summary.points_written)

    def finish(finished: list[Finished]) -> None:
        stale, rows = [], []
        for done in finished:
            indices = refused.pop(done.article.id, [])
            selection = stale_chunks(done, indices)
            if selection is not None:
                stale.append(selection)
            rows.append(ManifestRow(done.article.id, done.article_hash, done.chunk_count, len(indices)))
        if stale:
            summary.points_deleted += store.delete_chunks(stale)
        crashpoint("before-manifest-write")
        manifest.complete(rows)
        in_progress.difference_update(row.article_id for row in rows)

    embed_stage = _Stage("embed", to_embed, embed, stop, skip_when_stopped=True)
    write_stage = _Stage("write", to_write, write, stop, skip_when_stopped=False)
    embed_stage.start()
    write_stage.start()
    # An invalid row keeps the version already indexed (its id counts as seen); an
    # empty article is not seen, so a reindex deletes it.
    invalid_ids: list[str] = []
    try:
        articles = articles_from_rows(rows, summary, dead_letters, invalid_ids)
        for item in windows(articles, chunker, window, summary, manifest, store, track_seen=track_seen):
            if stop.is_set():
                break
            to_embed.put(item)
        if track_seen and invalid_ids:
            manifest.mark_seen(invalid_ids)
    except BaseException:
        stop.set()
        raise
    finally:
        to_embed.put(_DONE)
        embed_stage.join()
        to_write.put(_DONE)
        write_stage.join()
        summary.seconds = time.perf_counter() - started
        progress.update(summary.articles, summary.chunks, summary.points_written, force=True)
        progress.close()
    for stage in (embed_stage, write_stage):
        if stage.error is not None:
            raise stage.error
    if dead_letters.count:
        summary.dead_letter = str(dead_letters.path)
    return summary
