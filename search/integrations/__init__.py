"""This project's search inside RAG frameworks, each in an optional extra of its own:

- `search.integrations.langchain` (`pip install '.[langchain]'`): `SearchRetriever`
  and `SearchEmbeddings`;
- `search.integrations.llama_index` (`pip install '.[llamaindex]'`): `SearchRetriever`
  and `SearchEmbedding`.

Each retriever, built with no arguments, opens the index `python -m search` would
search from where it runs (the same defaults and environment variables: QDRANT_PATH,
QDRANT_URL, QDRANT_COLLECTION, EMBEDDER, TEI_URL, ...), or takes a `Searcher` of
the caller's. Its keyword options are `Searcher.search`'s (`k`, `mode`, `titles`,
`article_ids`, `urls`, `max_per_article`, `score_threshold`, `neighbours`), hybrid
by default where the collection has BM25 vectors. The embeddings classes embed with
the collection's own model and query instruction, for the frameworks' own stores.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

from search.api import Hit, Searcher
from search.options import open_searcher_from_env

# What a framework's document or node carries besides its text.
METADATA_KEYS = ("title", "url", "article_id", "chunk_index", "start", "end", "score", "similarity", "point_id")
# Given to the model with the text (the rest is for code: offsets, ids, scores).
CITATION_KEYS = ("title", "url")


@dataclass(frozen=True)
class SearchOptions:
    """`Searcher.search`'s keyword options, as both retrievers take them."""

    k: int = 5
    mode: str | None = None
    score_threshold: float | None = None
    article_ids: Sequence[str] | None = None
    titles: Sequence[str] | None = None
    urls: Sequence[str] | None = None
    max_per_article: int | None = None
    neighbours: int = 0

    def search(self, searcher: Searcher, query: str, **overrides: Any) -> list[Hit]:
        """Search with these options, any of them overridden for this one call."""
        unknown = set(overrides) - OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown search option(s) {', '.join(sorted(unknown))}: "
                            f"use {', '.join(sorted(OPTION_NAMES))}")
        options = {f.name: getattr(self, f.name) for f in fields(self)} | overrides
        return searcher.search(query, **options)


OPTION_NAMES = frozenset(f.name for f in fields(SearchOptions))


def default_searcher(searcher: Searcher | None) -> Searcher:
    """The caller's searcher, or the one `python -m search` would open here."""
    return searcher if searcher is not None else open_searcher_from_env()


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """A hit's fields other than its text, and its neighbours' context when asked for."""
    metadata = {key: getattr(hit, key) for key in METADATA_KEYS}
    if hit.context is not None:
        metadata.update(context=hit.context, context_start=hit.context_start, context_end=hit.context_end)
    return metadata
