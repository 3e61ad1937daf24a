"""`python -m search mcp` through the official MCP client over stdio: the tools are
listed with their schemas, answer with cited passages, and refuse bad arguments
with a message that names them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

import pytest

from ingest.jobs import run_ingest
from ingest.settings import IngestSettings, StoreSettings
from ingest.sources import sample_rows

TITLES = ("2001: A Space Odyssey", "Stanley Kubrick", "Mona Lisa", "Mount Everest")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, local_embedder):
    tmp = tmp_path_factory.mktemp("mcp")
    rows = {row["title"]: row for row in sample_rows()}
    source = tmp / "rows.jsonl"
    source.write_text("".join(json.dumps(rows[t]) + "\n" for t in TITLES), encoding="utf-8")
    run_ingest(
        IngestSettings(
            source=str(source),
            progress=False,
            dead_letter=str(tmp / "dl.jsonl"),
            store=StoreSettings(qdrant_path=str(tmp / "q"), collection="wiki"),
        ),
        embedder=local_embedder,
    )
    return str(tmp / "q")


def test_an_mcp_client_lists_and_calls_the_tools(store_path):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "search", "mcp", "--qdrant-path", store_path, "--collection", "wiki", "--device", "cpu"],
        env={**os.environ, "PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1"},
    )

    async def session_run():
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            found = await session.call_tool("search", {"query": "the film with the computer HAL 9000", "k": 2})
            cited = await session.call_tool(
                "context", {"query": "who directed 2001: A Space Odyssey", "max_chars": 1500, "k": 4}
            )
            empty = await session.call_tool("search", {"query": "  "})
            wide = await session.call_tool("search", {"query": "HAL", "k": 1000})
            return tools, found, cited, empty, wide

    tools, found, cited, empty, wide = asyncio.run(asyncio.wait_for(session_run(), timeout=180))
    assert set(tools) == {"search", "context"}
    assert {"query", "k", "mode", "titles", "max_per_article"} <= set(tools["search"].input_schema["properties"])
    assert tools["search"].input_schema["required"] == ["query"]
    assert not found.is_error
    hits = found.structured_content["hits"]
    assert len(hits) == 2 and hits[0]["title"] == "2001: A Space Odyssey" and hits[0]["url"].startswith("https://")
    assert not cited.is_error
    block = cited.structured_content
    assert block["text"].startswith("[1] ") and block["sources"][0]["title"] in TITLES
    assert len(block["text"]) <= 1500
    assert empty.is_error and "the query is empty" in empty.content[0].text
    assert wide.is_error and "k must be between 1 and 100, got 1000" in wide.content[0].text


def test_the_mcp_server_searches_through_any_configured_embedder_here_tei(store_path, local_embedder):
    """The same tools with the query embedded by a TEI server (the test suite's TEI
    stand-in on loopback, serving the real model): the backend flags are those of
    `python -m search`, so the MCP server searches whatever they configure."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from ingest.rehearsal.tei import TEIServer

    with TEIServer(embedder=local_embedder) as tei:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "search", "mcp", "--collection", "wiki", "--embedder", "tei"],
            env={
                **os.environ,
                "PYTHONPATH": os.getcwd(),
                "HF_HUB_OFFLINE": "1",
                "TEI_URL": tei.url,
                "QDRANT_PATH": store_path,
            },
        )

        async def session_run():
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool("search", {"query": "the film with the computer HAL 9000", "k": 2})

        found = asyncio.run(asyncio.wait_for(session_run(), timeout=180))
    assert not found.is_error, found.content
    assert found.structured_content["hits"][0]["title"] == "2001: A Space Odyssey"
    assert tei.received.paths["POST /embed"] >= 1  # the query went through TEI, not a model of its own


def test_an_embedder_outage_is_a_tool_error_that_says_so_without_tracebacks(store_path, local_embedder):
    """TEI stops after the server started: the tool answers what the HTTP API's 503
    says (the backend is unavailable, which part, try again later), and stderr has
    one line about it, not the SDK's tracebacks."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from ingest.rehearsal.tei import TEIServer

    tei = TEIServer(embedder=local_embedder).__enter__()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "search", "mcp", "--collection", "wiki", "--embedder", "tei", "--tei-retry-budget", "1"],
        env={
            **os.environ,
            "PYTHONPATH": os.getcwd(),
            "HF_HUB_OFFLINE": "1",
            "TEI_URL": tei.url,
            "QDRANT_PATH": store_path,
        },
    )

    async def session_run(errlog):
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()  # the server has opened TEI by now: stop it
            tei.dead.set()  # kept-alive connections answer nothing either
            tei.__exit__(None, None, None)
            return await session.call_tool("search", {"query": "HAL 9000", "k": 2})

    with tempfile.TemporaryFile("w+", encoding="utf-8") as errlog:
        try:
            failed = asyncio.run(asyncio.wait_for(session_run(errlog), timeout=180))
        finally:
            tei.__exit__(None, None, None)
        errlog.seek(0)
        stderr = errlog.read()
    assert failed.is_error
    assert failed.content[0].text == (
        "Error executing tool search: the search backend is unavailable (the "
        "embedder failed; the server's log says more): try again later"
    )
    assert "Traceback" not in stderr, stderr
    assert stderr.count("the embedder") == 1, stderr  # one line naming it (with the details TEI gave)


def test_the_tools_take_the_search_options_and_say_what_went_wrong_in_process():
    """The tools' parameters are the search options (`search.query.SearchOptions`),
    checked with the HTTP API's words; a search the collection cannot run is a tool
    error that says why, an outage the 503's words (a fake searcher, no model)."""
    import types

    from mcp.server.mcpserver.exceptions import ToolError

    from ingest.errors import SearchUsageError, StoreError
    from search.mcp_server import make_mcp_server
    from search.query import SearchOptions

    class Fake:
        name, spec = "wiki", types.SimpleNamespace(model=types.SimpleNamespace(name="fake/model"))
        asked: list[SearchOptions] = []
        error: Exception | None = None

        def search(self, query, options=None):
            self.asked.append(SearchOptions.of(options))
            if self.error is not None:
                raise self.error
            return []

    fake = Fake()
    server = make_mcp_server(fake)

    async def session():
        tools = {tool.name: tool for tool in await server.list_tools()}
        await server.call_tool("search", {"query": "HAL", "k": 2, "titles": ["A"], "max_per_article": 1})
        await server.call_tool("context", {"query": "HAL", "max_chars": 900})
        errors = []
        for tool, arguments, error in (
            ("search", {"query": "HAL", "mode": "sideways"}, None),
            ("search", {"query": "HAL", "mode": "hybrid"}, SearchUsageError("no sparse")),
            ("context", {"query": "HAL"}, StoreError("Qdrant at http://q:6333 is down")),
        ):
            fake.error = error
            try:
                await server.call_tool(tool, arguments)
            except ToolError as exc:
                errors.append(str(exc))
        return tools, errors

    tools, errors = asyncio.run(session())
    for tool in tools.values():
        assert set(SearchOptions.model_fields) <= set(tool.input_schema["properties"])
        assert tool.input_schema["required"] == ["query"]
    assert tools["context"].input_schema["properties"]["k"]["default"] == 8
    assert fake.asked[:2] == [SearchOptions(k=2, titles=["A"], max_per_article=1), SearchOptions(k=8)]
    assert "mode must be one of dense, hybrid, got 'sideways'" in errors[0]
    assert errors[1].endswith("no sparse")
    assert "the search backend is unavailable (the store failed" in errors[2] and "6333" not in errors[2]
