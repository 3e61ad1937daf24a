"""LlamaIndex: a retriever over this project's search and the collection's embedding model.

    from search.integrations.llama_index import SearchEmbedding, SearchRetriever

    retriever = SearchRetriever(k=5, max_per_article=1)     # the index `python -m search` uses here
    nodes = retriever.retrieve("who painted the Mona Lisa")   # or await retriever.aretrieve(...)
    nodes[0].node.text, nodes[0].node.metadata["url"], nodes[0].score

Each node has the chunk's text, the point id as `id_`, the article as its source
(`ref_doc_id` is the article id), `start_char_idx`/`end_char_idx` (the text's place
in the article), and `metadata` with `title`, `url`, `article_id`, `chunk_index`,
`start`, `end`, `score` and `similarity`, of which only `title` and `url` go into
prompts (the rest is excluded from the LLM's and the embedder's view). The keyword
options are `Searcher.search`'s (`search.query.SearchOptions`, or one given as
`options=`); `searcher=` takes an open `Searcher` instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
from pydantic import PrivateAttr

from ingest.embedders.base import Embedder, all_vectors
from search.api import Searcher
from search.integrations import CITATION_KEYS, METADATA_KEYS, default_searcher, hit_metadata
from search.query import Hit, SearchOptions

_HIDDEN = [key for key in METADATA_KEYS if key not in CITATION_KEYS] + ["context", "context_start", "context_end"]


class SearchRetriever(BaseRetriever):
    """`Searcher.search` as a LlamaIndex retriever (hybrid where the collection has BM25 vectors)."""

    def __init__(
        self, searcher: Searcher | None = None, *, options: SearchOptions | None = None, **kwargs: Any
    ) -> None:
        """`kwargs`: the search options by name (`k=5`, `mode="dense"`, ...: checked
        now), and LlamaIndex's own (`callback_manager`, `verbose`, ...)."""
        chosen = {name: kwargs.pop(name) for name in SearchOptions.model_fields.keys() & kwargs.keys()}
        super().__init__(**kwargs)
        self.options = SearchOptions.of(options, **chosen)
        self.searcher = default_searcher(searcher)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.searcher.search(query_bundle.query_str, options=self.options)
        return [NodeWithScore(node=node_of(hit), score=hit.score) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)  # the searcher blocks: off the loop

    def close(self) -> None:
        self.searcher.close()


def node_of(hit: Hit) -> TextNode:
    return TextNode(
        id_=hit.point_id,
        text=hit.text,
        metadata=hit_metadata(hit),
        start_char_idx=hit.start,
        end_char_idx=hit.end,
        excluded_llm_metadata_keys=list(_HIDDEN),
        excluded_embed_metadata_keys=list(_HIDDEN),
        relationships={
            NodeRelationship.SOURCE: RelatedNodeInfo(
                node_id=hit.article_id, metadata={"title": hit.title, "url": hit.url}
            )
        },
    )


class SearchEmbedding(BaseEmbedding):
    """The collection's model as a LlamaIndex embedding: queries get its query
    instruction, texts do not (as at ingest). `SearchEmbedding.of(searcher)`."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.spec.name, **kwargs)
        self._embedder = embedder

    @classmethod
    def of(cls, searcher: Searcher) -> SearchEmbedding:
        return cls(searcher.embedder)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed_queries([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return all_vectors(self._embedder.embed_passages(texts), where=self._embedder.spec.name).tolist()
