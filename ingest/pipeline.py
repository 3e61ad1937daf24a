"""The ingest pipeline: source rows → articles → chunks → vectors → Qdrant points.

Three stages overlap: this thread reads and chunks, one thread embeds, one
writes. Bounded queues between them keep memory flat whatever the corpus size,
and a failure in any stage stops the others and is raised here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ingest.chunking import Chunker
from ingest.deadletter import DeadLetter, DeadLetterFile
from ingest.embedders.base import Embedder, PassageEmbeddings
from ingest.progress import Progress
from ingest.store import QdrantStore
from schemas import Article, Chunk, ValidationError

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(slots=True)
class RunSummary:
    articles: int = 0
    skipped_empty: int = 0
    invalid: int = 0
    chunks: int = 0
    characters: int = 0
    points_written: int = 0
    rejected_chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    dead_letter: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.invalid + self.rejected_chunks

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


Pair = tuple[Article, Chunk]


def articles_from_rows(
    rows: Iterable[dict], summary: RunSummary, dead_letters: DeadLetterFile
) -> Iterator[Article]:
    """Validate rows; an invalid one is dead-lettered and counted, the run goes on."""
    for position, row in enumerate(rows):
        summary.articles += 1
        try:
            article = Article.from_row(row, position=position)
        except ValidationError as exc:
            summary.invalid += 1
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


def windows(articles: Iterable[Article], chunker: Chunker, size: int, summary: RunSummary) -> Iterator[list[Pair]]:
    """Chunks in windows of `size` (the last one may be smaller, never dropped)."""
    window: list[Pair] = []
    for article in articles:
        for chunk in chunker.chunks(article):
            window.append((article, chunk))
            summary.chunks += 1
            summary.characters += len(chunk.embed_text)
            if len(window) >= size:
                yield window
                window = []
    if window:
        yield window


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
) -> RunSummary:
    """Ingest `rows` into `store`; returns the run's counts and timings."""
    summary = RunSummary()
    progress = progress or Progress(None, enabled=False)
    stop = threading.Event()
    to_embed: queue.Queue = queue.Queue(maxsize=2)
    to_write: queue.Queue = queue.Queue(maxsize=2)
    started = time.perf_counter()

    def embed(pairs: list[Pair]) -> None:
        t0 = time.perf_counter()
        result = embedder.embed_passages([chunk.embed_text for _, chunk in pairs])
        summary.embed_seconds += time.perf_counter() - t0
        to_write.put((pairs, result))

    def write(item: tuple[list[Pair], PassageEmbeddings]) -> None:
        pairs, result = item
        keep = list(range(len(pairs)))
        if result.rejected:
            rejected = {r.index: r for r in result.rejected}
            for index, rejection in rejected.items():
                article, chunk = pairs[index]
                dead_letters.write(DeadLetter("chunk", article.id, chunk.chunk_index, rejection.status,
                                              rejection.message, article.title))
            summary.rejected_chunks += len(rejected)
            keep = [i for i in keep if i not in rejected]
        if keep:
            t0 = time.perf_counter()
            store.upsert_pairs([pairs[i] for i in keep], result.vectors[keep])
            summary.write_seconds += time.perf_counter() - t0
            summary.points_written += len(keep)
        progress.update(summary.articles, summary.chunks, summary.points_written)

    embed_stage = _Stage("embed", to_embed, embed, stop, skip_when_stopped=True)
    write_stage = _Stage("write", to_write, write, stop, skip_when_stopped=False)
    embed_stage.start()
    write_stage.start()
    try:
        articles = articles_from_rows(rows, summary, dead_letters)
        for pairs in windows(articles, chunker, window, summary):
            if stop.is_set():
                break
            to_embed.put(pairs)
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
