"""LlamaIndex: a retriever over a `Searcher` and the collection's embedding model.

    from search import Searcher
    from search.adapters.llamaindex import WikiEmbedding, WikiRetriever

    searcher = Searcher.open()
    retriever = WikiRetriever(searcher, k=5, max_per_article=1)
    nodes = retriever.retrieve("who painted the Mona Lisa")    # or await retriever.aretrieve(...)
    nodes[0].node.text, nodes[0].node.metadata["url"], nodes[0].score

Each node has the chunk's text, the point id as `id_`, the article as its source
(`ref_doc_id` is the article id), `start_char_idx`/`end_char_idx` (the text's place
in the article), and `metadata` with `title`, `url`, `article_id`, `chunk_index`,
`start`, `end`, `score` and `similarity`, of which only `title` and `url` go into
prompts (the rest is excluded from the LLM's and the embedder's view). Keyword
arguments are `Searcher.search`'s options.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
from pydantic import PrivateAttr

from ingest.embedders.base import Embedder, all_vectors
from search.adapters import CITATION_KEYS, METADATA_KEYS, hit_metadata
from search.api import Hit, Searcher

_HIDDEN = [key for key in METADATA_KEYS if key not in CITATION_KEYS] + ["context", "context_start", "context_end"]


class WikiRetriever(BaseRetriever):
    """`Searcher.search` as a LlamaIndex retriever (hybrid where the collection has BM25 vectors)."""

    def __init__(self, searcher: Searcher, *, k: int = 5, **search_kwargs: Any) -> None:
        super().__init__()
        self.searcher, self.k, self.search_kwargs = searcher, k, search_kwargs

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.searcher.search(query_bundle.query_str, k=self.k, **self.search_kwargs)
        return [NodeWithScore(node=node_of(hit), score=hit.score) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)  # the searcher's calls block: off the loop


def node_of(hit: Hit) -> TextNode:
    return TextNode(
        id_=hit.point_id, text=hit.text, metadata=hit_metadata(hit), start_char_idx=hit.start, end_char_idx=hit.end,
        excluded_llm_metadata_keys=list(_HIDDEN), excluded_embed_metadata_keys=list(_HIDDEN),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.article_id,
                                                                metadata={"title": hit.title, "url": hit.url})})


class WikiEmbedding(BaseEmbedding):
    """The collection's model as a LlamaIndex embedding: queries get its query
    instruction, texts do not (as at ingest). `WikiEmbedding.of(searcher)`."""

    _embedder: Any = PrivateAttr()

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.spec.name, **kwargs)
        self._embedder = embedder

    @classmethod
    def of(cls, searcher: Searcher) -> "WikiEmbedding":
        return cls(searcher.embedder)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed_queries([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return all_vectors(self._embedder.embed_passages(texts), where=self._embedder.spec.name).tolist()
