"""LangChain: a retriever over this project's search and the collection's embeddings.

    from search.integrations.langchain import SearchEmbeddings, SearchRetriever

    retriever = SearchRetriever(k=5, max_per_article=1)     # the index `python -m search` uses here
    docs = retriever.invoke("who painted the Mona Lisa")      # or await retriever.ainvoke(...)
    docs[0].page_content, docs[0].metadata["title"], docs[0].metadata["url"]
    retriever.invoke("Everest", k=2, mode="dense")           # options for one call

Each `Document` has the chunk's text as `page_content`, the point id as `id`, and
`metadata` with `title`, `url`, `article_id`, `chunk_index`, `start`/`end` (the
text's place in the article), `score` and `similarity`. The keyword options are
`Searcher.search`'s (`search.query.SearchOptions`: the retriever is one, and checks
them when it is made); `searcher=` takes an open `Searcher` instead of the default.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from ingest.embedders.base import Embedder, all_vectors
from search.api import Searcher
from search.integrations import default_searcher, hit_metadata
from search.query import SearchOptions


class SearchRetriever(BaseRetriever, SearchOptions):
    """`Searcher.search` as a LangChain retriever (hybrid where the collection has
    BM25 vectors). Its fields are `searcher` and the search options, which it
    inherits, limits and all, so that LangChain sees them."""

    # LangChain's own settings: a retriever is changed after it is made, and ignores what it does not know
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=False, extra="ignore")

    searcher: Searcher | None = None

    def model_post_init(self, context: Any) -> None:
        self.searcher = default_searcher(self.searcher)  # opened now: a bad setting fails here, not mid-chain

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        return self._documents(query, overrides)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        return await asyncio.to_thread(self._documents, query, overrides)  # the searcher blocks: off the loop

    def _documents(self, query: str, overrides: dict[str, Any]) -> list[Document]:
        hits = self.searcher.search(query, options=self, **overrides)  # its options, any overridden for this call
        return [Document(page_content=hit.text, metadata=hit_metadata(hit), id=hit.point_id) for hit in hits]

    def close(self) -> None:
        self.searcher.close()


class SearchEmbeddings(Embeddings):
    """The collection's model as LangChain embeddings: queries get its query
    instruction, documents do not (as at ingest). `SearchEmbeddings.of(searcher)`
    (or `.of(retriever.searcher)`) points LangChain's own Qdrant store at a server
    collection this project built."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    @classmethod
    def of(cls, searcher: Searcher) -> SearchEmbeddings:
        return cls(searcher.embedder)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return all_vectors(self.embedder.embed_passages(texts), where=self.embedder.spec.name).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
