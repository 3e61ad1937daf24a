"""`python -m search mcp`: the search as tools of a Model Context Protocol server
(the official `mcp` SDK, stdio transport), for agents: Claude Desktop, IDEs, any
MCP client.

Tools:
- `search(query, k=5, mode, titles, article_ids, urls, max_per_article,
  score_threshold, neighbours)`: ranked passages with title, url, article id,
  offsets and scores;
- `context(query, max_chars=4000, k=8, ...)`: the numbered, cited context block for
  a prompt, and its sources.

Arguments are checked as the HTTP endpoint checks them (`search.request`), so a bad
one is a tool error that names it; a store or embedder failure is the HTTP API's 503
message (`search.server.unavailable_message`), with one line on stderr (the traceback
with -v). stdout carries the protocol; logs go to stderr.

    {"mcpServers": {"wikipedia": {"command": "python", "args": ["-m", "search", "mcp",
     "--qdrant-path", "/path/to/qdrant_data"]}}}
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any, Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ingest.errors import IngestError
from search.api import Searcher
from search.context import build_context
from search.options import add_searcher_args, searcher_command
from search.request import DEFAULT_MAX_QUERY_CHARS, HTTPError, SearchRequest, parse_search
from search.server import failed_part, unavailable_message

log = logging.getLogger("search.mcp")

PROG = "python -m search mcp"
DEFAULT_CONTEXT_CHARS = 4000


def make_server(searcher: Searcher, *, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
                verbose: bool = False) -> MCPServer:
    """An MCP server whose tools search `searcher`. A store or embedder failure is
    a tool error in the HTTP API's words and one line on stderr (its traceback
    too when `verbose`)."""
    server = MCPServer(name="wikipedia-search", instructions=(
        f"Search {searcher.name!r}, a Wikipedia index ({searcher.spec.model.name}): `search` for ranked "
        "passages, `context` for a cited block to answer from. Cite titles and urls."))

    def checked(fields: dict[str, Any]) -> SearchRequest:
        try:
            return parse_search({k: v for k, v in fields.items() if v is not None}, max_query_chars=max_query_chars)
        except HTTPError as exc:
            raise ToolError(exc.message) from None

    async def run(call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(call)  # the searcher blocks: off the server's loop
        except ValueError as exc:  # SearchError: the searcher refused the arguments
            raise ToolError(str(exc)) from None
        except IngestError as exc:  # an outage, said as HTTP's 503 says it; the SDK would log tracebacks
            log.error("search failed: the %s: %s", failed_part(exc), exc, exc_info=exc if verbose else None)
            raise ToolError(unavailable_message(failed_part(exc))) from None

    @server.tool(description="Ranked Wikipedia passages for a query, with title, url and scores. mode: "
                             "'hybrid' (default where available) or 'dense'; titles/article_ids/urls restrict "
                             "to those articles; max_per_article caps hits per article.")
    async def search(query: str, k: int = 5, mode: str | None = None, titles: list[str] | None = None,
                     article_ids: list[str] | None = None, urls: list[str] | None = None,
                     max_per_article: int | None = None, score_threshold: float | None = None,
                     neighbours: int = 0) -> dict[str, Any]:
        request = checked(dict(query=query, k=k, mode=mode, titles=titles, article_ids=article_ids, urls=urls,
                               max_per_article=max_per_article, score_threshold=score_threshold,
                               neighbours=neighbours))
        hits = await run(lambda: searcher.search(request.query, k=request.k, **request.search_options()))
        return {"query": request.query, "hits": [hit.to_dict() for hit in hits]}

    @server.tool(description="A numbered context block of Wikipedia passages for a query, one source per "
                             "article with its title and url, within max_chars: paste it into a prompt and cite "
                             "the [n] numbers.")
    async def context(query: str, max_chars: int = DEFAULT_CONTEXT_CHARS, k: int = 8, mode: str | None = None,
                      titles: list[str] | None = None, max_per_article: int | None = None,
                      neighbours: int = 0) -> dict[str, Any]:
        request = checked(dict(query=query, k=k, mode=mode, titles=titles, max_per_article=max_per_article,
                               neighbours=neighbours, context_chars=max_chars))
        hits = await run(lambda: searcher.search(request.query, k=request.k, **request.search_options()))
        return build_context(hits, max_chars=request.context_chars).to_dict()

    return server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_searcher_args(parser)
    return parser


def _serve(args: argparse.Namespace, open_searcher: Callable) -> int:
    with open_searcher() as searcher:
        make_server(searcher, verbose=args.verbose > 0).run("stdio")
    return 0


main = searcher_command(PROG, build_parser, _serve)
