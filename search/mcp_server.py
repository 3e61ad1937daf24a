"""`python -m search mcp`: the search as tools of a Model Context Protocol server
(the official `mcp` SDK, stdio transport), for agents: Claude Desktop, IDEs, any
MCP client.

Tools:
- `search(query, k=5, mode, score_threshold, article_ids, titles, urls,
  max_per_article, neighbours)`: ranked passages with title, url, article id,
  offsets and scores;
- `context(query, max_chars=4000, k=8, ...)`: the numbered, cited context block for
  a prompt, and its sources.

Their parameters beyond the query (and `max_chars`) are the search options
(`search.query.SearchOptions`). Arguments are checked as the HTTP endpoint checks
them (`search.request`), so a bad one is a tool error that names it, as is a search
the collection cannot run; a store or embedder failure is the HTTP API's 503
message (`search.server.unavailable_message`), with one line on stderr (the traceback
with -v). stdout carries the protocol; logs go to stderr.

    {"mcpServers": {"wikipedia": {"command": "python", "args": ["-m", "search", "mcp",
     "--qdrant-path", "/path/to/qdrant_data"]}}}
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import types
from typing import Annotated, Any, Callable, Literal, Union, get_args, get_origin

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ingest.errors import IngestError, SearchUsageError
from search.api import CONTEXT_K, Searcher
from search.command import add_searcher_args, searcher_command
from search.context import build_context
from search.query import SearchOptions
from search.request import DEFAULT_MAX_QUERY_CHARS, HTTPError, SearchRequest, parse_search
from search.server import failed_part, unavailable_message

log = logging.getLogger("search.mcp")

PROG = "python -m search mcp"
DEFAULT_CONTEXT_CHARS = 4000


def _as_json(annotation: Any) -> Any:
    """An option's type as a tool's schema gives it: its JSON type, without limits
    or choices, which `parse_search` checks with messages that say what is wrong
    (the SDK's own would be pydantic's)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _as_json(args[0])
    if origin is Literal:
        return type(args[0])
    if origin in (Union, types.UnionType):
        return Union[tuple(_as_json(arg) for arg in args)]  # noqa: UP007 - a union made at run time
    if origin is list:
        return list[_as_json(args[0])]  # type: ignore[misc]
    return annotation


def _with_options(tool: Callable, *first: inspect.Parameter, **defaults: Any) -> Callable:
    """`tool(query, ..., **options)` as the SDK reads a tool's parameters: the query,
    `first`, then each search option with its default (or the one in `defaults`)."""
    options = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=_as_json(field.annotation),
            default=defaults.get(name, field.default),
        )
        for name, field in SearchOptions.model_fields.items()
    ]
    query = inspect.Parameter("query", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
    tool.__signature__ = inspect.Signature(
        [query, *first, *options],  # type: ignore[attr-defined]
        return_annotation=dict[str, Any],
    )
    return tool


def make_mcp_server(
    searcher: Searcher, *, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS, verbose: bool = False
) -> MCPServer:
    """An MCP server whose tools search `searcher`. A store or embedder failure is
    a tool error in the HTTP API's words and one line on stderr (its traceback
    too when `verbose`)."""
    server = MCPServer(
        name="wikipedia-search",
        instructions=(
            f"Search {searcher.name!r}, a Wikipedia index ({searcher.spec.model.name}): `search` for ranked "
            "passages, `context` for a cited block to answer from. Cite titles and urls."
        ),
    )

    def checked(fields: dict[str, Any]) -> SearchRequest:
        try:
            return parse_search({k: v for k, v in fields.items() if v is not None}, max_query_chars=max_query_chars)
        except HTTPError as exc:
            raise ToolError(exc.message) from None

    async def run(call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(call)  # the searcher blocks: off the server's loop
        except SearchUsageError as exc:  # the collection cannot run it (hybrid without sparse vectors): say why
            raise ToolError(str(exc)) from None
        except IngestError as exc:  # an outage, said as HTTP's 503 says it; the SDK would log tracebacks
            log.error("search failed: the %s: %s", failed_part(exc), exc, exc_info=exc if verbose else None)
            raise ToolError(unavailable_message(failed_part(exc))) from None

    async def search(query: str, **options: Any) -> dict[str, Any]:
        request = checked(dict(query=query, **options))
        hits = await run(lambda: searcher.search(request.query, options=request))
        return {"query": request.query, "hits": [hit.model_dump() for hit in hits]}

    async def context(query: str, max_chars: int, **options: Any) -> dict[str, Any]:
        request = checked(dict(query=query, context_chars=max_chars, **options))
        hits = await run(lambda: searcher.search(request.query, options=request))
        return build_context(hits, max_chars=request.context_chars).model_dump()

    server.tool(
        description="Ranked Wikipedia passages for a query, with title, url and scores. mode: "
        "'hybrid' (default where available) or 'dense'; titles/article_ids/urls restrict "
        "to those articles; max_per_article caps hits per article."
    )(_with_options(search))
    max_chars = inspect.Parameter(
        "max_chars", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int, default=DEFAULT_CONTEXT_CHARS
    )
    server.tool(
        description="A numbered context block of Wikipedia passages for a query, one source per "
        "article with its title and url, within max_chars: paste it into a prompt and cite "
        "the [n] numbers."
    )(_with_options(context, max_chars, k=CONTEXT_K))
    return server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_searcher_args(parser)
    return parser


def _serve(args: argparse.Namespace, open_searcher: Callable) -> int:
    with open_searcher() as searcher:
        make_mcp_server(searcher, verbose=args.verbose > 0).run("stdio")
    return 0


main = searcher_command(PROG, build_parser, _serve)
