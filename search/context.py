"""The RAG context block: search hits as numbered, citable sources within a budget.

A language model reads the block; the application shows the sources. One source
per article, numbered in the order of its best hit, headed by title and url so
that "[2]" in an answer can be cited. Hits of one article whose chunks touch or
overlap (neighbouring chunks, a chunker's overlap) are merged into one passage
through their offsets in the article, so no sentence appears twice; passages
with the same text (an article copied under two titles) are kept once.

>>> from search import Searcher
>>> from search.context import build_context
>>> with Searcher.open() as searcher:   # doctest: +SKIP
...     context = build_context(searcher.search("who directed 2001: A Space Odyssey", k=5), max_chars=2000)
>>> print(context.text)                                       # doctest: +SKIP
[1] 2001: A Space Odyssey — https://en.wikipedia.org/wiki/2001:_A_Space_Odyssey
2001: A Space Odyssey is a 1968 epic science fiction film produced and directed by Stanley Kubrick. ...
"""

from __future__ import annotations

import re
from typing import Annotated, Callable, Iterable, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field

# Two chunks of an article whose texts are this close (usually the whitespace the
# chunker stripped) read as one passage.
ADJACENT_GAP = 2
ELLIPSIS = " …"
MIN_TRUNCATED_CHARS = 80  # a shorter tail of a cut passage is not worth its header


class Span(Protocol):
    """What the context builder needs from a hit (`search.api.Hit` has it)."""

    article_id: str
    title: str
    url: str
    text: str
    start: int
    end: int
    score: float


# The block and its parts are what the Python API returns and what the HTTP API answers.
class Passage(BaseModel):
    """Consecutive text of one article: offsets into its text, and the text."""

    model_config = ConfigDict(frozen=True)

    start: int
    end: int
    text: str


class Citation(BaseModel):
    """One article the block cites, under its number."""

    model_config = ConfigDict(frozen=True)

    number: Annotated[int, Field(ge=1, description="Its [number] in the context text")]
    article_id: str
    title: str
    url: str
    score: Annotated[float, Field(description="Its best hit's score")]
    passages: list[Passage]

    def header(self) -> str:
        return f"[{self.number}] {self.title} — {self.url}" if self.url else f"[{self.number}] {self.title}"

    def body(self) -> str:
        return "\n…\n".join(p.text for p in self.passages)


class Context(BaseModel):
    """The numbered RAG context block: `text` for the prompt; `sources` for the
    citations it refers to by number."""

    model_config = ConfigDict(frozen=True)

    text: Annotated[str, Field(description="Numbered passages under their titles and URLs, ready for a prompt")]
    sources: Annotated[list[Citation], Field(description="What each number in the text cites")]
    truncated: Annotated[bool, Field(description="Whether some of what was found did not fit")]


def merge_passages(spans: Iterable[tuple[int, int, str]]) -> list[Passage]:
    """Merge (start, end, text) pieces of one article's text that overlap or touch,
    in article order. Texts are slices of the article at those offsets."""
    merged: list[Passage] = []
    for start, end, text in sorted(spans, key=lambda s: (s[0], -s[1])):
        if merged and start <= merged[-1].end + ADJACENT_GAP:
            last = merged[-1]
            if end <= last.end:
                continue  # inside what is there already
            overlap = max(0, last.end - start)
            joint = "" if overlap or start == last.end else " "
            merged[-1] = Passage(start=last.start, end=end, text=last.text + joint + text[overlap:])
        else:
            merged.append(Passage(start=start, end=end, text=text))
    return merged


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def group_sources(hits: Sequence[Span]) -> list[Citation]:
    """One source per article, in the order of each article's best hit, with its
    passages merged; a passage whose text an earlier source already has is dropped."""
    best: dict[str, Span] = {}  # each article's first hit, its best
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for hit in hits:
        best.setdefault(hit.article_id, hit)
        spans.setdefault(hit.article_id, []).append((hit.start, hit.end, hit.text))
    seen: set[str] = set()
    sources: list[Citation] = []
    for article_id, hit in best.items():
        passages = []
        for passage in merge_passages(spans[article_id]):
            key = _normal(passage.text)
            if key in seen:
                continue
            seen.add(key)
            passages.append(passage)
        if passages:
            sources.append(
                Citation(
                    number=len(sources) + 1,
                    article_id=article_id,
                    title=hit.title,
                    url=hit.url,
                    score=hit.score,
                    passages=passages,
                )
            )
    return sources


def _cut(text: str, limit: int) -> str | None:
    """The longest prefix of `text` within `limit` characters (ellipsis included)
    ending at a sentence, else a word, boundary; None if nothing useful fits."""
    room = limit - len(ELLIPSIS)
    if room < MIN_TRUNCATED_CHARS:
        return None
    head = text[:room]
    sentence = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
    if sentence >= MIN_TRUNCATED_CHARS:
        return head[: sentence + 1] + ELLIPSIS
    word = head.rstrip()
    word = re.sub(r"\s+\S*$", "", word) if " " in word else word
    return word + ELLIPSIS if len(word) >= MIN_TRUNCATED_CHARS else None


def build_context(
    hits: Sequence[Span],
    *,
    max_chars: int | None = None,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Context:
    """The numbered context block for `hits` (best first), within `max_chars`
    characters or `max_tokens` tokens as `count_tokens` counts them (pass your
    LLM's tokenizer; `Searcher.context` passes the embedding model's).

    Sources are added best first; a passage that does not fit is cut at a
    sentence boundary if a useful part fits, and the block stops there."""
    if max_tokens is not None and count_tokens is None:
        raise ValueError("max_tokens needs count_tokens, the function that counts your model's tokens")
    for name, value in (("max_chars", max_chars), ("max_tokens", max_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")

    def size(text: str) -> int:
        return count_tokens(text) if max_tokens is not None else len(text)  # type: ignore[misc]

    budget = max_tokens if max_tokens is not None else max_chars
    blocks: list[str] = []
    kept: list[Citation] = []
    truncated = False
    used = 0  # of the budget, by the blocks kept so far
    for source in group_sources(hits):
        if truncated:
            break
        header = ("\n\n" if blocks else "") + source.header()
        passages: list[Passage] = []
        for passage in source.passages:
            candidate = header + "\n" + "\n…\n".join([p.text for p in passages] + [passage.text])
            if budget is None or used + size(candidate) <= budget:
                passages.append(passage)
                continue
            truncated = True
            prefix = header + "\n" + "\n…\n".join([p.text for p in passages] + [""])
            left = budget - used - size(prefix)
            # characters for the cut: exact for a character budget, proportional for tokens
            chars = left if max_tokens is None else int(left * len(passage.text) / max(1, size(passage.text)))
            while chars > 0:
                cut = _cut(passage.text, chars)
                if cut is None:
                    break
                if used + size(prefix + cut) <= budget:
                    passages.append(
                        Passage(start=passage.start, end=passage.start + len(cut) - len(ELLIPSIS), text=cut)
                    )
                    break
                chars -= max(1, chars // 10)
            break
        if not passages:
            break
        source = source.model_copy(update={"passages": passages, "number": len(kept) + 1})
        kept.append(source)
        block = source.header() + "\n" + source.body()
        used += size(("\n\n" if blocks else "") + block)
        blocks.append(block)
    return Context(text="\n\n".join(blocks), sources=kept, truncated=truncated)
