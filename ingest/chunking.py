"""Split articles into chunks on sentence and word boundaries.

Better than fixed 512-character windows: a chunk never cuts a word, prefers to
end at a sentence, fits a character budget and the model's token limit (counted
with the model's tokenizer when the embedder has one), may overlap its
predecessor, and may carry the article title in the text that is embedded while
the stored text stays clean. Text is consumed lazily, a window of sentences at a
time, so a multi-megabyte article streams through in bounded memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from ingest.errors import SettingsError
from ingest.settings.models import ChunkingSettings
from schemas import Article, Chunk

TokenCounter = Callable[[Sequence[str]], "list[int] | None"]

# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space, or at a line break.
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*\s+|\n\s*")
_WORD = re.compile(r"\S+\s*")
_WINDOW = 256  # sentences tokenized per tokenizer call
_SPECIAL_TOKENS = 2  # [CLS] ... [SEP] (or <s> ... </s>)


def embed_text(title: str, text: str, title_prefix: bool) -> str:
    return f"{title}\n{text}" if title_prefix else text


@dataclass(slots=True)
class _Unit:
    start: int
    end: int
    tokens: int


class Chunker:
    """Chunks articles for one model.

    >>> chunker = Chunker(ChunkingSettings(max_chars=200), max_tokens=256)
    >>> [c.text for c in chunker.chunks(article)]            # doctest: +SKIP
    """

    def __init__(
        self,
        settings: ChunkingSettings,
        *,
        max_tokens: int,
        count_tokens: TokenCounter | None = None,
    ) -> None:
        self.settings = settings
        self.max_tokens = max_tokens
        self._count = count_tokens

    def chunks(self, article: Article) -> Iterator[Chunk]:
        """Yield the article's chunks in order; nothing for an empty article."""
        text = article.text
        prefix_tokens = 0
        if self.settings.title_prefix:
            prefix_tokens = self._tokens([article.title + "\n"])[0]
        budget = self.max_tokens - _SPECIAL_TOKENS - prefix_tokens
        if budget < 8:
            raise SettingsError(
                f"article {article.id!r}: the title {article.title[:60]!r} leaves {budget} tokens of the "
                f"model's {self.max_tokens}; disable the title prefix (--no-title-prefix)"
            )
        index = 0
        for start, end in self._fitting(text, article.title, budget):
            chunk_text = text[start:end]
            yield Chunk(
                article_id=article.id,
                chunk_index=index,
                text=chunk_text,
                start=start,
                end=end,
                embed_text=embed_text(article.title, chunk_text, self.settings.title_prefix),
            )
            index += 1

    # -- internals ---------------------------------------------------------
    def _fitting(self, text: str, title: str, budget: int) -> Iterator[tuple[int, int]]:
        """Packed spans, re-counted as a whole when near the limit (token counts of
        pieces can differ slightly from the count of their concatenation)."""
        for start, end, tokens in self._pack(text, budget):
            if self._count is None or tokens < budget - 8:
                yield start, end
                continue
            yield from self._split_to_fit(text, title, start, end)

    def _split_to_fit(self, text: str, title: str, start: int, end: int) -> Iterator[tuple[int, int]]:
        whole = embed_text(title, text[start:end], self.settings.title_prefix)
        if self._tokens([whole])[0] + _SPECIAL_TOKENS <= self.max_tokens or end - start < 2:
            yield start, end
            return
        middle = text.rfind(" ", start, (start + end) // 2 + 1)
        middle = middle if middle > start else (start + end) // 2
        for span in (_strip(text, start, middle), _strip(text, middle, end)):
            if span:
                yield from self._split_to_fit(text, title, *span)

    def _tokens(self, texts: Sequence[str]) -> list[int]:
        counted = self._count(texts) if self._count else None
        if counted is None:  # no tokenizer at hand: budget by characters alone
            return [0] * len(texts)
        return counted

    def _units(self, text: str, budget: int) -> Iterator[_Unit]:
        """Sentences (split further into words, then characters, when too big), with token counts."""
        window: list[tuple[int, int]] = []
        for span in _sentence_spans(text):
            window.append(span)
            if len(window) >= _WINDOW:
                yield from self._measure(text, window, budget)
                window = []
        if window:
            yield from self._measure(text, window, budget)

    def _measure(self, text: str, spans: list[tuple[int, int]], budget: int) -> Iterator[_Unit]:
        counts = self._tokens([text[s:e] for s, e in spans])
        max_chars = self.settings.max_chars
        for (start, end), tokens in zip(spans, counts):
            if end - start <= max_chars and tokens <= budget:
                yield _Unit(start, end, tokens)
                continue
            words = [(m.start(), m.end()) for m in _WORD.finditer(text, start, end)]
            word_counts = self._tokens([text[s:e] for s, e in words])
            for (ws, we), wt in zip(words, word_counts):
                if we - ws <= max_chars and wt <= budget:
                    yield _Unit(ws, we, wt)
                    continue
                # One giant "word" (a URL, a table row): cut it into pieces that surely fit.
                step = max(1, min(max_chars, budget if self._count else max_chars))
                for ps in range(ws, we, step):
                    pe = min(we, ps + step)
                    yield _Unit(ps, pe, self._tokens([text[ps:pe]])[0])

    def _pack(self, text: str, budget: int) -> Iterator[tuple[int, int, int]]:
        """Greedy packing of units into spans within both budgets, with overlap."""
        max_chars = self.settings.max_chars
        overlap = self.settings.overlap_chars
        current: list[_Unit] = []
        tokens = 0
        for unit in self._units(text, budget):
            if current and (unit.end - current[0].start > max_chars or tokens + unit.tokens > budget):
                span = _strip(text, current[0].start, current[-1].end)
                if span:
                    yield (*span, tokens)
                current = _tail(current, overlap)
                tokens = sum(u.tokens for u in current)
                while current and (unit.end - current[0].start > max_chars or tokens + unit.tokens > budget):
                    tokens -= current.pop(0).tokens
            current.append(unit)
            tokens += unit.tokens
        if current:
            span = _strip(text, current[0].start, current[-1].end)
            if span:
                yield (*span, tokens)


def _sentence_spans(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if end > start:
            yield start, end
        start = end
    if start < len(text):
        yield start, len(text)


def _tail(units: list[_Unit], overlap: int) -> list[_Unit]:
    """The last units of a chunk that fit in `overlap` characters (never the whole chunk)."""
    if overlap <= 0:
        return []
    kept: list[_Unit] = []
    for unit in reversed(units[1:]):
        if units[-1].end - unit.start > overlap:
            break
        kept.insert(0, unit)
    return kept


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Trim surrounding whitespace from a span; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None
