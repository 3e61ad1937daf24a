"""The RAG framework integrations against the real packages (langchain-core,
llama-index-core), over a small real index: the bundled model, the embedded store."""

from __future__ import annotations

import asyncio
import importlib
import json

import numpy as np
import pytest

from ingest.chunking import ChunkingSettings
from ingest.errors import SearchError, SearchUsageError, StoreError
from ingest.jobs import run_ingest
from ingest.settings import IngestSettings, StoreSettings
from ingest.sources import sample_rows
from search import Searcher
from search.api import SearchOptions
from tests.counting_embedder import CountingEmbedder
from tests.qdrant_standin import server_stand_in

TITLES = (
    "Mona Lisa",
    "Leonardo da Vinci",
    "The Starry Night",
    "Vincent van Gogh",
    "2001: A Space Odyssey",
    "Stanley Kubrick",
    "Mount Everest",
    "Photosynthesis",
)


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, local_embedder):
    tmp = tmp_path_factory.mktemp("integrations")
    rows = {row["title"]: row for row in sample_rows()}
    source = tmp / "rows.jsonl"
    source.write_text("".join(json.dumps(rows[t]) + "\n" for t in TITLES if t in rows), encoding="utf-8")
    settings = IngestSettings(
        source=str(source),
        progress=False,
        dead_letter=str(tmp / "dl.jsonl"),
        chunking=ChunkingSettings(max_chars=300),
        store=StoreSettings(qdrant_path=str(tmp / "q"), collection="wiki"),
    )
    run_ingest(settings, embedder=local_embedder)
    with Searcher.open(settings.store, embedder=local_embedder) as opened:
        yield opened


def test_the_langchain_retriever_returns_documents_with_text_citations_and_offsets(searcher):
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from search.integrations.langchain import SearchRetriever

    retriever = SearchRetriever(searcher=searcher, k=4)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke("the painting of a woman with a mysterious smile")
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    first = docs[0]
    hit = searcher.search("the painting of a woman with a mysterious smile", k=1)[0]
    assert (first.page_content, first.id, first.metadata["title"]) == (hit.text, hit.point_id, hit.title)
    assert first.metadata["url"].startswith("https://en.wikipedia.org/wiki/") and first.page_content
    assert set(first.metadata) >= {"article_id", "chunk_index", "start", "end", "score", "similarity"}
    capped = SearchRetriever(searcher=searcher, k=4, max_per_article=1, mode="dense")
    titles = [d.metadata["title"] for d in capped.invoke("Leonardo's portrait")]
    assert len(titles) == len(set(titles)) == 4  # the cap passed through
    only = SearchRetriever(searcher=searcher, k=3, titles=["Mount Everest"])
    assert {d.metadata["title"] for d in asyncio.run(only.ainvoke("a painting"))} == {"Mount Everest"}
    assert len(only.invoke("a painting", k=1)) == 1  # an option for one call
    near = SearchRetriever(searcher=searcher, k=1, neighbours=1).invoke("Leonardo's portrait")[0]
    assert near.page_content in near.metadata["context"]
    with pytest.raises(TypeError, match="unknown search option.*kk"):
        retriever.invoke("a painting", kk=2)
    with pytest.raises(ValueError, match="less than or equal to 100"):  # the options' limits, when it is made
        SearchRetriever(searcher=searcher, k=500)


def test_the_langchain_embeddings_are_the_collections_model_with_its_query_instruction(searcher):
    from search.integrations.langchain import SearchEmbeddings

    embeddings = SearchEmbeddings.of(searcher)
    query = embeddings.embed_query("who painted the Mona Lisa")
    np.testing.assert_allclose(query, searcher.embedder.embed_queries(["who painted the Mona Lisa"])[0], atol=1e-6)
    documents = asyncio.run(embeddings.aembed_documents(["one passage", "another"]))
    assert len(documents) == 2 and len(documents[0]) == searcher.spec.dimension


def test_the_llamaindex_retriever_returns_nodes_with_their_source_offsets_and_lean_prompts(searcher):
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import MetadataMode, NodeWithScore

    from search.integrations.llama_index import SearchRetriever

    retriever = SearchRetriever(searcher, k=3, max_per_article=1)
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
    given = SearchRetriever(searcher, options=SearchOptions(k=3, max_per_article=1))
    assert [n.node.node_id for n in given.retrieve("the film with the computer HAL 9000")] == [
        n.node.node_id for n in nodes
    ]
    with pytest.raises(SearchUsageError, match="k must be between 1 and 100, got 500"):
        SearchRetriever(searcher, k=500)


def test_the_llamaindex_embedding_is_the_collections_model(searcher):
    from search.integrations.llama_index import SearchEmbedding

    embedding = SearchEmbedding.of(searcher)
    np.testing.assert_allclose(
        embedding.get_query_embedding("Everest"), searcher.embedder.embed_queries(["Everest"])[0], atol=1e-6
    )
    assert len(embedding.get_text_embedding_batch(["a", "b", "c"])) == 3
    assert len(asyncio.run(embedding.aget_query_embedding("Everest"))) == searcher.spec.dimension


@pytest.fixture(scope="module")
def ingested_folder(tmp_path_factory, local_embedder):
    """A folder where `python -m ingest` ran: ./qdrant_data, collection "wikipedia"."""
    folder = tmp_path_factory.mktemp("here")
    rows = {row["title"]: row for row in sample_rows()}
    (folder / "rows.jsonl").write_text("".join(json.dumps(rows[t]) + "\n" for t in TITLES[:4]), encoding="utf-8")
    run_ingest(
        IngestSettings(
            source=str(folder / "rows.jsonl"),
            progress=False,
            dead_letter=str(folder / "dl.jsonl"),
            store=StoreSettings(qdrant_path=str(folder / "qdrant_data")),
        ),
        embedder=local_embedder,
    )
    return folder


@pytest.mark.parametrize("framework", ["langchain", "llama_index"])
def test_a_retriever_built_with_no_arguments_searches_the_index_where_ingest_ran(
    framework, ingested_folder, monkeypatch, tmp_path
):
    """The contract: `SearchRetriever()` in the folder where `python -m ingest` ran
    searches that index with `python -m search`'s defaults, and the same environment
    variables choose another store; a folder with no index is refused, not created."""
    module = importlib.import_module(f"search.integrations.{framework}")
    for env in ({}, {"QDRANT_PATH": str(ingested_folder / "qdrant_data")}):
        monkeypatch.chdir(ingested_folder if not env else tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        retriever = module.SearchRetriever(k=2)
        try:
            results = (
                retriever.invoke("Starry Night painter")
                if framework == "langchain"
                else [n.node for n in retriever.retrieve("Starry Night painter")]
            )
        finally:
            retriever.close()
        assert len(results) == 2 and all(r.metadata["url"] and r.metadata["title"] for r in results)
        assert {"Vincent van Gogh", "The Starry Night"} & {r.metadata["title"] for r in results}
        assert set(results[0].metadata) >= {"title", "url", "article_id", "chunk_index", "score"}
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "nothing"))
    with pytest.raises((StoreError, SearchError), match="python -m ingest"):  # no store; no collection in it
        module.SearchRetriever()
    assert not (tmp_path / "nothing").exists()


@pytest.fixture
def server_collection(tmp_path):
    """Six sample articles written by this project through the server backend
    (qdrant-client's local mode standing in for a server), as the frameworks' own
    stores would find them: (server, embedder, rows)."""
    rows = sample_rows()[:6]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    server, embedder = server_stand_in("wiki", path=str(tmp_path / "q")), CountingEmbedder()
    try:
        run_ingest(
            IngestSettings(
                source=str(tmp_path / "rows.jsonl"),
                progress=False,
                dead_letter=str(tmp_path / "dl.jsonl"),
                store=StoreSettings(collection="wiki"),
            ),
            embedder=embedder,
            store=server,
        )
        yield server, embedder, rows
    finally:
        server.close()


def test_langchains_own_qdrant_store_reads_the_text_but_not_the_citations_of_a_server_collection(server_collection):
    """What docs/python-api.md says of langchain-qdrant over a collection this project wrote
    to a server (qdrant-client's local mode standing in for it): with
    content_payload_key="text" and vector_name="" the text comes back, but no title
    or url, since the payload is flat and LangChain reads a nested `metadata`."""
    from langchain_qdrant import QdrantVectorStore

    from search.integrations.langchain import SearchEmbeddings

    server, embedder, rows = server_collection
    theirs = QdrantVectorStore(
        client=server.client,
        collection_name="wiki",
        embedding=SearchEmbeddings(embedder),
        content_payload_key="text",
        vector_name="",
    )
    (doc,) = theirs.similarity_search(rows[2]["text"][:200], k=1)  # (the counting embedder is not semantic)
    assert doc.page_content and any(doc.page_content in row["text"] for row in rows)  # a stored chunk's text
    assert "title" not in doc.metadata and "url" not in doc.metadata  # hence this project's retriever
    defaults = QdrantVectorStore(
        client=server.client, collection_name="wiki", embedding=SearchEmbeddings(embedder), vector_name=""
    )
    assert defaults.similarity_search(rows[2]["title"], k=1)[0].page_content == ""  # the default key is wrong


def test_llamaindexs_own_qdrant_store_reads_text_and_citations_but_sends_every_field_to_the_prompt(server_collection):
    """What docs/python-api.md says of llama-index-vector-stores-qdrant over such a
    collection: text, title and url come back, but every payload field goes into the
    prompt (hashes, offsets) and the node has no source document."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import MetadataMode
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from search.integrations.llama_index import SearchEmbedding

    server, embedder, rows = server_collection
    index = VectorStoreIndex.from_vector_store(
        QdrantVectorStore(client=server.client, collection_name="wiki"), embed_model=SearchEmbedding(embedder)
    )
    (found,) = index.as_retriever(similarity_top_k=1).retrieve(rows[2]["title"])
    node = found.node
    assert any(node.get_content() in row["text"] for row in rows) and node.get_content()
    assert node.metadata["url"].startswith("https://en.wikipedia.org/wiki/") and node.metadata["title"]
    assert "chunk_hash" in node.get_content(metadata_mode=MetadataMode.LLM)  # noise in every prompt
    assert node.ref_doc_id is None  # hence this project's retriever


def test_a_langchain_chain_answers_from_the_retrieved_passages_with_their_citations(searcher):
    """The retriever in an LCEL chain (prompt and a model), as a RAG app would use it:
    the prompt the model gets holds each passage with its title and url. The model
    is langchain-core's own fake chat model, which records nothing itself, so the
    prompt is read off a callback."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    from search.integrations.langchain import SearchRetriever

    def cited(docs):
        return "\n\n".join(f"[{d.metadata['title']}]({d.metadata['url']})\n{d.page_content}" for d in docs)

    prompts: list[str] = []
    prompt = ChatPromptTemplate.from_template("Answer from these sources:\n{context}\n\nQuestion: {question}")
    chain = (
        {"context": SearchRetriever(searcher=searcher, k=3) | RunnableLambda(cited), "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(lambda value: prompts.append(value.to_string()) or value)
        | FakeListChatModel(responses=["Leonardo da Vinci"])
        | StrOutputParser()
    )
    assert chain.invoke("who painted the Mona Lisa") == "Leonardo da Vinci"
    (sent,) = prompts
    assert "Question: who painted the Mona Lisa" in sent and sent.count("](https://en.wikipedia.org/wiki/") == 3
    assert "[Mona Lisa](https://en.wikipedia.org/wiki/Mona_Lisa)" in sent


def test_a_llamaindex_query_engine_answers_with_source_nodes_that_cite_their_articles(searcher):
    """The retriever under LlamaIndex's own query engine (with its MockLLM, which
    echoes the prompt): every source node has title and url, and the prompt
    holds them but no offsets or ids."""
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    from search.integrations.llama_index import SearchRetriever

    engine = RetrieverQueryEngine.from_args(SearchRetriever(searcher, k=3), llm=MockLLM())
    response = engine.query("the film with the computer HAL 9000")
    assert len(response.source_nodes) == 3
    assert all(n.node.metadata["title"] and n.node.metadata["url"] for n in response.source_nodes)
    assert response.source_nodes[0].node.metadata["title"] == "2001: A Space Odyssey"
    prompt = str(response)  # MockLLM answers with the prompt it was given
    assert "2001: A Space Odyssey" in prompt and "url: https://en.wikipedia.org/wiki/" in prompt
    assert "chunk_index" not in prompt and "point_id" not in prompt
