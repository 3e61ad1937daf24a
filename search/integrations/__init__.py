"""This project's search inside RAG frameworks, each in an optional extra of its own:

- `search.integrations.langchain` (`pip install '.[langchain]'`): `SearchRetriever`
  and `SearchEmbeddings`;
- `search.integrations.llama_index` (`pip install '.[llamaindex]'`): `SearchRetriever`
  and `SearchEmbedding`.

Each retriever, built with no arguments, opens the index `python -m search` would
search from where it runs (the same defaults and environment variables: QDRANT_PATH,
QDRANT_URL, QDRANT_COLLECTION, EMBEDDER, TEI_URL, ...), or takes a `Searcher` of
the caller's. Its keyword options are `Searcher.search`'s, `search.query.SearchOptions`
(`k`, `mode`, `score_threshold`, `article_ids`, `titles`, `urls`, `max_per_article`,
`neighbours`), hybrid by default where the collection has BM25 vectors. The
embeddings classes embed with the collection's own model and query instruction, for
the frameworks' own stores.
"""

from __future__ import annotations

from typing import Any

from search.api import Searcher
from search.command import open_searcher_from_env
from search.query import Hit

# What a framework's document or node carries besides its text.
METADATA_KEYS = ("title", "url", "article_id", "chunk_index", "start", "end", "score", "similarity", "point_id")
# Given to the model with the text (the rest is for code: offsets, ids, scores).
CITATION_KEYS = ("title", "url")


def default_searcher(searcher: Searcher | None) -> Searcher:
    """The caller's searcher, or the one `python -m search` would open here."""
    return searcher if searcher is not None else open_searcher_from_env()


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """A hit's fields other than its text, and its neighbours' context when asked for."""
    metadata = {key: getattr(hit, key) for key in METADATA_KEYS}
    if hit.context is not None:
        metadata.update(context=hit.context, context_start=hit.context_start, context_end=hit.context_end)
    return metadata
