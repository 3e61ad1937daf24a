"""The RAG framework adapters against the real packages (langchain-core,
llama-index-core), over a small real index: the bundled model, the embedded store."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from ingest.chunking import ChunkingSettings
from ingest.settings import IngestSettings, StoreSettings
from ingest.sources import sample_rows
from ingest.sync import run_ingest
from search import Searcher
from tests.counting_embedder import CountingEmbedder
from tests.qdrant_standin import server_stand_in

TITLES = ("Mona Lisa", "Leonardo da Vinci", "The Starry Night", "Vincent van Gogh", "2001: A Space Odyssey",
          "Stanley Kubrick", "Mount Everest", "Photosynthesis")


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, local_embedder):
    tmp = tmp_path_factory.mktemp("adapters")
    rows = {row["title"]: row for row in sample_rows()}
    source = tmp / "rows.jsonl"
    source.write_text("".join(json.dumps(rows[t]) + "\n" for t in TITLES if t in rows), encoding="utf-8")
    settings = IngestSettings(source=str(source), progress=False, dead_letter=str(tmp / "dl.jsonl"),
                              chunking=ChunkingSettings(max_chars=300),
                              store=StoreSettings(qdrant_path=str(tmp / "q"), collection="wiki"))
    run_ingest(settings, embedder=local_embedder)
    with Searcher.open(settings.store, embedder=local_embedder) as opened:
        yield opened


def test_the_langchain_retriever_returns_documents_with_text_citations_and_offsets(searcher):
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from search.adapters.langchain import WikiRetriever

    retriever = WikiRetriever(searcher=searcher, k=4)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("the painting of a woman with a mysterious smile")
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    first = docs[0]
    hit = searcher.search("the painting of a woman with a mysterious smile", k=1)[0]
    assert (first.page_content, first.id, first.metadata["title"]) == (hit.text, hit.point_id, hit.title)
    assert first.metadata["url"].startswith("https://en.wikipedia.org/wiki/") and first.page_content
    assert set(first.metadata) >= {"article_id", "chunk_index", "start", "end", "score", "similarity"}
    capped = WikiRetriever(searcher=searcher, k=4, search_kwargs={"max_per_article": 1, "mode": "dense"})
    titles = [d.metadata["title"] for d in capped.invoke("Leonardo's portrait")]
    assert len(titles) == len(set(titles))  # the cap passed through
    only = WikiRetriever(searcher=searcher, k=3, search_kwargs={"titles": ["Mount Everest"]})
    assert {d.metadata["title"] for d in asyncio.run(only.ainvoke("a painting"))} == {"Mount Everest"}


def test_the_langchain_embeddings_are_the_collections_model_with_its_query_instruction(searcher):
    from search.adapters.langchain import WikiEmbeddings

    embeddings = WikiEmbeddings.of(searcher)
    query = embeddings.embed_query("who painted the Mona Lisa")
    np.testing.assert_allclose(query, searcher.embedder.embed_queries(["who painted the Mona Lisa"])[0], atol=1e-6)
    documents = asyncio.run(embeddings.aembed_documents(["one passage", "another"]))
    assert len(documents) == 2 and len(documents[0]) == searcher.spec.dimension


def test_the_llamaindex_retriever_returns_nodes_with_their_source_offsets_and_lean_prompts(searcher):
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import MetadataMode, NodeWithScore

    from search.adapters.llamaindex import WikiRetriever

    retriever = WikiRetriever(searcher, k=3, max_per_article=1)
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve("the film with the computer HAL 9000")
    assert len(nodes) == 3 and all(isinstance(n, NodeWithScore) for n in nodes)
    node = nodes[0].node
    assert node.metadata["title"] == "2001: A Space Odyssey" and node.ref_doc_id == node.metadata["article_id"]
    assert (node.start_char_idx, node.end_char_idx) == (node.metadata["start"], node.metadata["end"])
    assert nodes[0].score == node.metadata["score"]
    prompt = node.get_content(metadata_mode=MetadataMode.LLM)
    assert "2001: A Space Odyssey" in prompt and node.metadata["url"] in prompt and node.text in prompt
    assert "chunk_index" not in prompt and "similarity" not in prompt and "point_id" not in prompt
    assert len({n.node.metadata["article_id"] for n in nodes}) == 3  # max_per_article passed through
    again = asyncio.run(retriever.aretrieve("the film with the computer HAL 9000"))
    assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]


def test_the_llamaindex_embedding_is_the_collections_model(searcher):
    from search.adapters.llamaindex import WikiEmbedding

    embedding = WikiEmbedding.of(searcher)
    np.testing.assert_allclose(embedding.get_query_embedding("Everest"),
                               searcher.embedder.embed_queries(["Everest"])[0], atol=1e-6)
    assert len(embedding.get_text_embedding_batch(["a", "b", "c"])) == 3
    assert len(asyncio.run(embedding.aget_query_embedding("Everest"))) == searcher.spec.dimension


@pytest.fixture
def server_collection(tmp_path):
    """Six sample articles written by this project through the server backend
    (qdrant-client's local mode standing in for a server), as the frameworks' own
    stores would find them: (server, embedder, rows)."""
    rows = sample_rows()[:6]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    server, embedder = server_stand_in("wiki", path=str(tmp_path / "q")), CountingEmbedder()
    try:
        run_ingest(IngestSettings(source=str(tmp_path / "rows.jsonl"), progress=False,
                                  dead_letter=str(tmp_path / "dl.jsonl"), store=StoreSettings(collection="wiki")),
                   embedder=embedder, store=server)
        yield server, embedder, rows
    finally:
        server.close()


def test_langchains_own_qdrant_store_reads_the_text_but_not_the_citations_of_a_server_collection(server_collection):
    """What the README says of langchain-qdrant over a collection this project wrote
    to a server (qdrant-client's local mode standing in for it): with
    content_payload_key="text" and vector_name="" the text comes back, but no title
    or url, since the payload is flat and LangChain reads a nested `metadata`."""
    from langchain_qdrant import QdrantVectorStore

    from search.adapters.langchain import WikiEmbeddings

    server, embedder, rows = server_collection
    theirs = QdrantVectorStore(client=server.client, collection_name="wiki", embedding=WikiEmbeddings(embedder),
                               content_payload_key="text", vector_name="")
    (doc,) = theirs.similarity_search(rows[2]["text"][:200], k=1)  # (the counting embedder is not semantic)
    assert doc.page_content and any(doc.page_content in row["text"] for row in rows)  # a stored chunk's text
    assert "title" not in doc.metadata and "url" not in doc.metadata  # hence this project's retriever
    defaults = QdrantVectorStore(client=server.client, collection_name="wiki", embedding=WikiEmbeddings(embedder),
                                 vector_name="")
    assert defaults.similarity_search(rows[2]["title"], k=1)[0].page_content == ""  # the default key is wrong


def test_llamaindexs_own_qdrant_store_reads_text_and_citations_but_sends_every_field_to_the_prompt(
        server_collection):
    """What the README says of llama-index-vector-stores-qdrant over such a
    collection: text, title and url come back, but every payload field goes into the
    prompt (hashes, offsets) and the node has no source document."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import MetadataMode
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from search.adapters.llamaindex import WikiEmbedding

    server, embedder, rows = server_collection
    index = VectorStoreIndex.from_vector_store(QdrantVectorStore(client=server.client, collection_name="wiki"),
                                               embed_model=WikiEmbedding(embedder))
    (found,) = index.as_retriever(similarity_top_k=1).retrieve(rows[2]["title"])
    node = found.node
    assert any(node.get_content() in row["text"] for row in rows) and node.get_content()
    assert node.metadata["url"].startswith("https://en.wikipedia.org/wiki/") and node.metadata["title"]
    assert "chunk_hash" in node.get_content(metadata_mode=MetadataMode.LLM)  # noise in every prompt
    assert node.ref_doc_id is None  # hence this project's retriever
