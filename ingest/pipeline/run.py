"""The ingest pipeline: source rows → articles → chunks → vectors → Qdrant points,
incremental and resumable through the manifest (`ingest.state.manifest`).

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
from typing import Callable, Iterable, Iterator

from ingest.chunking import Chunker
from ingest.crashpoints import crashpoint
from ingest.embedders.base import Embedder
from ingest.pipeline.deadletters import DeadLetter, DeadLetterSink
from ingest.pipeline.firsts import FirstRows
from ingest.pipeline.summary import RunSummary
from ingest.pipeline.windows import (
    Finished,
    Window,
    WindowVectors,
    embed_window,
    stale_chunks,
    windows,
)
from ingest.progress import Progress
from ingest.sources import BadRow
from ingest.state.manifest import Manifest, ManifestRow
from ingest.store.base import PointWriter
from schemas import Article, ValidationError, visible

log = logging.getLogger(__name__)

_DONE = object()
READ_AHEAD = 1024  # rows whose ids are checked against the earlier rows' together (`articles_from_rows`)


def articles_from_rows(
    rows: Iterable[dict],
    summary: RunSummary,
    dead_letters: DeadLetterSink,
    invalid: Callable[[list[str]], None] | None = None,
) -> Iterator[Article]:
    """Validate rows; an invalid one is dead-lettered and counted (its id, if it has
    one, handed to `invalid`, a batch of ids at a time), and the run goes on. A row
    the source could not read (`BadRow`: its file and line) is dead-lettered the same
    way. A row whose id an earlier row had is left out, reported with both rows, and
    dead-lettered: the first row wins, whatever the order of later runs' reading.

    The ids met are kept on disk (`FirstRows`), checked a batch of `READ_AHEAD` rows at
    a time, so memory does not grow with the source; each row is still handled, and its
    article yielded, in the source's order."""
    with FirstRows() as firsts:
        for batch, failure in _read_ahead(rows, READ_AHEAD):
            read = [(position, row, _article(row, position)) for position, row in batch]
            first = firsts.claim(
                [(a.id, position) for position, _, a in read if isinstance(a, Article) and visible(a.text)]
            )
            invalid_ids = []
            for position, row, article in read:
                summary.articles += 1
                if isinstance(row, BadRow):
                    summary.unreadable += 1
                    log.warning("skipping %s", row.message)
                    dead_letters.write(DeadLetter("article", None, None, None, row.message, None))
                    continue
                if isinstance(article, ValidationError):
                    summary.invalid += 1
                    if row.get("id") not in (None, ""):
                        invalid_ids.append(str(row["id"]))
                    log.warning("skipping %s", article)
                    dead_letters.write(
                        DeadLetter(
                            "article",
                            str(row.get("id")) if row.get("id") is not None else None,
                            None,
                            None,
                            str(article),
                            row.get("title") if isinstance(row.get("title"), str) else None,
                        )
                    )
                    continue
                if not visible(article.text):
                    summary.skipped_empty += 1
                    continue
                earlier = first[article.id]
                if earlier != position:
                    summary.duplicates += 1
                    message = (
                        f"article {article.id!r} ({article.title!r}) appears again in row {position}, after row "
                        f"{earlier}: the first is kept; give each article one row"
                    )
                    log.warning("skipping %s", message)
                    dead_letters.write(DeadLetter("article", article.id, None, None, message, article.title))
                    continue
                yield article
            if invalid is not None and invalid_ids:
                invalid(invalid_ids)
            if failure is not None:
                raise failure


def _article(row: dict | BadRow, position: int) -> Article | ValidationError | None:
    """The row's article, the reason it is invalid, or None for a row the source could not read."""
    if isinstance(row, BadRow):
        return None
    try:
        return Article.from_row(row, position=position)
    except ValidationError as exc:
        return exc


def _read_ahead(rows: Iterable[dict], size: int) -> Iterator[tuple[list[tuple[int, dict]], BaseException | None]]:
    """(position, row) in batches of `size`, rows counted from 1 as a file's lines are; a
    failure of the source comes after the rows read before it: (those rows, the failure)."""
    numbered = enumerate(rows, 1)
    while True:
        batch: list[tuple[int, dict]] = []
        try:
            for item in numbered:
                batch.append(item)
                if len(batch) >= size:
                    break
        except BaseException as exc:  # noqa: BLE001 - raised again once the rows before it are handled
            yield batch, exc
            return
        if batch:
            yield batch, None
        if len(batch) < size:
            return


class _Stage(threading.Thread):
    """A worker thread that takes items from `inbox` until the sentinel.

    It always consumes its inbox to the end, so putting into it never blocks for
    good: after its own failure it discards, and a stage with `skip_when_stopped`
    discards once the run is stopping (no point embedding what will not be written).
    The writer has it off: what was embedded before a failure upstream still lands."""

    def __init__(self, name: str, inbox: queue.Queue, work, stop: threading.Event, *, skip_when_stopped: bool) -> None:
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
    store: PointWriter,
    dead_letters: DeadLetterSink,
    window: int = 512,
    progress: Progress | None = None,
    manifest: Manifest | None = None,
    track_seen: bool = False,
    definitions: bool = False,
) -> RunSummary:
    """Ingest the new and changed articles of `rows` into `store`, recording them in
    `manifest` (a throw-away one by default: then every article is new). With
    `track_seen`, the manifest remembers the ids met, for deleting the others after;
    `definitions`: the store keeps each article's definition vector (`ingest.definitions`).
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
    progress.watch(lambda: (summary.articles, summary.chunks, summary.points_written))

    def embed(item: Window) -> None:
        result = None
        if item.pairs:
            t0 = time.perf_counter()
            result = embed_window(embedder, item)
            summary.embed_seconds += time.perf_counter() - t0
        to_write.put((item, result))

    def write(item: tuple[Window, WindowVectors | None]) -> None:
        window_, result = item
        fresh = [i for i in window_.article_ids() if i not in in_progress]
        if fresh:
            manifest.mark_pending(fresh)
            in_progress.update(fresh)
        pairs = window_.pairs
        keep = list(range(len(pairs)))
        # A first chunk is stored with its definition or not at all: one whose definition the embedder
        # refused is refused with it, so that the manifest counts it missing and the next run tries both.
        rejected = {r.index: ("chunk", r) for r in result.rejected} if result is not None else {}
        for rejection in result.undefined if result is not None else []:
            rejected.setdefault(rejection.index, ("definition", rejection))
        for index, (kind, rejection) in rejected.items():
            article, chunk = pairs[index]
            dead_letters.write(
                DeadLetter(kind, article.id, chunk.chunk_index, rejection.status, rejection.message, article.title)
            )
            refused.setdefault(article.id, []).append(chunk.chunk_index)
        summary.rejected_chunks += len(rejected)
        keep = [i for i in keep if i not in rejected]
        crashpoint("before-upsert")
        if keep:
            t0 = time.perf_counter()
            definitions = {n: result.definitions[i] for n, i in enumerate(keep) if i in result.definitions}
            store.upsert_pairs([pairs[i] for i in keep], result.vectors[keep], definitions)
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
        store.flush()  # the manifest never claims what a power cut could take
        crashpoint("before-manifest-write")
        manifest.complete(rows)
        in_progress.difference_update(row.article_id for row in rows)

    embed_stage = _Stage("embed", to_embed, embed, stop, skip_when_stopped=True)
    write_stage = _Stage("write", to_write, write, stop, skip_when_stopped=False)
    embed_stage.start()
    write_stage.start()
    # An invalid row keeps the version already indexed (its id counts as seen); an
    # empty article is not seen, so a reindex deletes it.
    retry_counts = getattr(embedder, "retry_counts", None)  # backends that retry say how often, by cause
    retried_before = retry_counts() if retry_counts is not None else {}
    try:
        articles = articles_from_rows(rows, summary, dead_letters, manifest.mark_seen if track_seen else None)
        for item in windows(
            articles, chunker, window, summary, manifest, store, track_seen=track_seen, definitions=definitions
        ):
            if stop.is_set():
                break
            to_embed.put(item)
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
        summary.dead_letter = dead_letters.where
    if retry_counts is not None:
        after = retry_counts()
        summary.retries = {
            cause: n - retried_before.get(cause, 0) for cause, n in after.items() if n > retried_before.get(cause, 0)
        }
    return summary
