"""The pipeline's unit of work: a window of chunks for one embedder call, built
from the new and changed articles only (change detection happens here, before any
embedding), and what an article's completion must clean up.

- Articles are looked up in the manifest a batch at a time; one whose hash matches
  its row is counted and skipped before it is even chunked.
- Inside a changed article (or one a stopped run left pending), a chunk whose hash
  is the stored point's at the same index keeps its stored vector: only changed
  chunks are embedded.
- In a collection with definition vectors (`ingest.definitions`), an article's first
  chunk also has its definition embedded, in the same embedder call as the chunks; an
  unchanged first chunk keeps its stored one, or has only the definition embedded when
  it has none (a collection given definitions after it was built).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import numpy as np

from ingest.chunking import Chunker
from ingest.definitions import definition_text
from ingest.embedders.base import Embedder, Rejection
from ingest.pipeline.summary import RunSummary
from ingest.state.manifest import Manifest, ManifestRow
from ingest.store.base import ChunkSelection, Pair, PointWriter, StoredVector
from schemas import Article, Chunk

LOOKUP_BATCH = 256  # articles per manifest lookup


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
    defined: dict[int, np.ndarray] = field(default_factory=dict)  # position -> a stored definition vector kept
    to_define: dict[int, str] = field(default_factory=dict)  # position -> the definition to embed there

    def article_ids(self) -> list[str]:
        return list(dict.fromkeys([a.id for a, _ in self.pairs] + [f.article.id for f in self.finished]))


@dataclass(slots=True)
class WindowVectors:
    """A window's vectors: one per chunk (rows listed in `rejected` are zeros and are not
    stored), and the definition vectors of its first chunks (position -> vector)."""

    vectors: np.ndarray
    rejected: list[Rejection] = field(default_factory=list)
    definitions: dict[int, np.ndarray] = field(default_factory=dict)
    undefined: list[Rejection] = field(default_factory=list)  # definitions refused, by the chunk's position


def windows(
    articles: Iterable[Article],
    chunker: Chunker,
    size: int,
    summary: RunSummary,
    manifest: Manifest,
    store: PointWriter,
    *,
    track_seen: bool = False,
    definitions: bool = False,
) -> Iterator[Window]:
    """Chunks of the new and changed articles, in windows of `size` (the last one
    may be smaller, never dropped); unchanged articles are counted and skipped.
    `definitions`: the collection keeps a definition vector on each first chunk."""
    window = Window()

    def add(article: Article, chunk: Chunk, kept: StoredVector | None) -> Iterator[Window]:
        nonlocal window
        position = len(window.pairs)
        if kept is not None:
            window.reused[position] = kept.vector
            summary.reused += 1
        else:
            summary.characters += len(chunk.embed_text)  # what the embedder reads
        if definitions and chunk.chunk_index == 0:
            if kept is not None and kept.definition is not None:
                window.defined[position] = kept.definition
            else:
                window.to_define[position] = definition_text(chunk.text)
                summary.characters += len(window.to_define[position])
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
            elif previous.article_hash == digest and not previous.pending:
                summary.retried += 1  # only its refused chunks: the rest keep their stored vectors
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
                reusable = kept is not None and kept.chunk_hash == chunk.content_hash
                yield from add(article, chunk, kept if reusable else None)
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


def embed_window(embedder: Embedder, window: Window) -> WindowVectors:
    """Vectors for every chunk of the window, the reused ones as stored, the others
    embedded; and the first chunks' definition vectors, kept or embedded in the same call.
    A definition the embedder refuses is left out (`undefined`): the writer refuses its
    chunk with it, so that the next run tries both (`ingest.pipeline.run`)."""
    todo = [i for i in range(len(window.pairs)) if i not in window.reused]
    texts = [window.pairs[i][1].embed_text for i in todo]
    texts += list(window.to_define.values())
    vectors = np.empty((len(window.pairs), embedder.spec.dimension), dtype=np.float32)
    for i, vector in window.reused.items():
        vectors[i] = vector
    definitions = dict(window.defined)
    rejected: list[Rejection] = []
    undefined: list[Rejection] = []
    if texts:
        result = embedder.embed_passages(texts)
        vectors[todo] = result.vectors[: len(todo)]
        refused = {r.index: r for r in result.rejected}
        rejected = [replace(r, index=todo[r.index]) for r in result.rejected if r.index < len(todo)]
        for row, position in enumerate(window.to_define, start=len(todo)):
            if row in refused:
                undefined.append(replace(refused[row], index=position))
            else:
                definitions[position] = result.vectors[row]
    return WindowVectors(vectors, rejected, definitions, undefined)
