"""LangChain: a retriever over a `Searcher` and the collection's embeddings.

    from search import Searcher
    from search.adapters.langchain import WikiEmbeddings, WikiRetriever

    searcher = Searcher.open()
    retriever = WikiRetriever(searcher=searcher, k=5, search_kwargs={"max_per_article": 1})
    docs = retriever.invoke("who painted the Mona Lisa")      # or await retriever.ainvoke(...)
    docs[0].page_content, docs[0].metadata["title"], docs[0].metadata["url"]

Each `Document` has the chunk's text as `page_content`, the point id as `id`, and
`metadata` with `title`, `url`, `article_id`, `chunk_index`, `start`/`end` (the
text's place in the article), `score` and `similarity`. `search_kwargs` are
`Searcher.search`'s options (`mode`, `titles`, `article_ids`, `urls`,
`max_per_article`, `score_threshold`, `neighbours`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from ingest.embedders.base import Embedder, all_vectors
from search.adapters import hit_metadata
from search.api import Searcher


class WikiRetriever(BaseRetriever):
    """`Searcher.search` as a LangChain retriever (hybrid where the collection has BM25 vectors)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Searcher
    k: int = 5
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self._documents(query)

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return await asyncio.to_thread(self._documents, query)  # the searcher's calls block: off the loop

    def _documents(self, query: str) -> list[Document]:
        hits = self.searcher.search(query, k=self.k, **self.search_kwargs)
        return [Document(page_content=hit.text, metadata=hit_metadata(hit), id=hit.point_id) for hit in hits]


class WikiEmbeddings(Embeddings):
    """The collection's model as LangChain embeddings: queries get its query
    instruction, documents do not (as at ingest). Give it a searcher's embedder
    (`WikiEmbeddings.of(searcher)`) to point LangChain's own Qdrant store at a
    server collection this project built."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    @classmethod
    def of(cls, searcher: Searcher) -> "WikiEmbeddings":
        return cls(searcher.embedder)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return all_vectors(self.embedder.embed_passages(texts), where=self.embedder.spec.name).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
