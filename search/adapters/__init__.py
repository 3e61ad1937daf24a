"""This project's search inside RAG frameworks, each in an optional extra of its own:

- `search.adapters.langchain` (`pip install '.[langchain]'`): a LangChain retriever
  and embeddings class;
- `search.adapters.llamaindex` (`pip install '.[llamaindex]'`): a LlamaIndex
  retriever and embedding class.

Both wrap a `search.Searcher`, so they search any backend it opens (the embedded
folder, a Qdrant server, embeddings from TEI or Modal), hybrid by default, with its
filters and per-article cap, and the embeddings classes embed with the
collection's own model and query instruction.
"""

from __future__ import annotations

from typing import Any

from search.api import Hit

# What a framework's document or node carries besides its text.
METADATA_KEYS = ("title", "url", "article_id", "chunk_index", "start", "end", "score", "similarity", "point_id")
# Given to the model with the text (the rest is for code: offsets, ids, scores).
CITATION_KEYS = ("title", "url")


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """A hit's fields other than its text, and its neighbours' context when asked for."""
    metadata = {key: getattr(hit, key) for key in METADATA_KEYS}
    if hit.context is not None:
        metadata.update(context=hit.context, context_start=hit.context_start, context_end=hit.context_end)
    return metadata
