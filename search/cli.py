"""`python -m search`: search a collection from the command line, or serve it over HTTP.

Commands:
  QUERY   (the default) ranked passages with title, url and score
  serve   an HTTP search service: GET/POST /search, GET /health, GET /openapi.json, a page at /
  eval    retrieval quality over a question file: recall@1/5/10, MRR and latency
  bench   query latency of each search option (modes, filters, caps, neighbours), side by side
  mcp     the search and context tools of an MCP server, on stdio (the `mcp` extra)

  python -m search "the space film in which the computer HAL 9000 turns on its crew"
  python -m search -k 3 --json "who painted the Mona Lisa"     # one JSON object per hit
  python -m search --title "Mona Lisa" --neighbours 1 "who painted it"
  python -m search --context 4000 "who painted the Mona Lisa"  # a numbered context block for a prompt
  SEARCH_API_TOKEN=$(openssl rand -hex 32) python -m search serve --port 8000
  python -m search eval --questions search/questions/sample.jsonl  # recall@1/5/10 and MRR

`python -m search serve --help`, `eval --help` and `bench --help` tell more. A query
that is a command's name goes after `--`: python -m search -- serve

Hits are ranked by their score: the cosine similarity in dense mode; in hybrid mode the
fused score of the vector and BM25 rankings (reciprocal-rank fusion), printed with the
passage's cosine beside it, which need not follow the order. Each search loads the
model first (seconds on a CPU): for many queries, serve once (`serve`) and query that.

Exit codes: 0 done (hits printed or none found; the server stopped by SIGINT or
SIGTERM); 1 failed (the message names the problem); 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
import textwrap
from typing import Sequence

from ingest.edge import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Edge, run_command
from ingest.edge import console as edge_console
from ingest.errors import SettingsError
from ingest.logs import setup_logging
from ingest.settings import SERVE, ServeSettings, add_flags, embedder_settings, from_args, store_settings
from search import bench, evaluation
from search.api import Searcher
from search.command import OpenSearcher, add_searcher_args, searcher_command
from search.query import SEARCH_MODES, Hit, SearchOptions, limits
from search.server import TOKEN_ENV, make_app
from search.serving import is_loopback, make_server, serve_until_stopped, server_url

log = logging.getLogger("search")


def _whole_number(low: int, high: int | None = None):
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be at least {low}, got {value}"
                if high is None
                else f"must be between {low} and {high}, got {value}"
            )
        return value

    return parse


def _number(low: float, high: float):
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _query(raw: str) -> str:
    if not raw.strip():
        raise argparse.ArgumentTypeError('is empty: say what to look for, e.g. "who painted the Mona Lisa"')
    return raw


def build_parser() -> argparse.ArgumentParser:
    """The query's flags. Those of the search options (`search.query.SearchOptions`)
    have the option's name as their destination, and its default and limits."""
    parser = argparse.ArgumentParser(
        prog="python -m search", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults, (fewest, most) = SearchOptions(), limits(SearchOptions, "k")
    parser.add_argument("query", type=_query, help="what to look for, in plain words")
    parser.add_argument(
        "-k",
        type=_whole_number(fewest, most),
        default=defaults.k,
        help=f"number of hits, {fewest} to {most} (default %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per hit on stdout (with --context: the context block as JSON)",
    )
    options = parser.add_argument_group("what to search")
    options.add_argument(
        "--mode",
        choices=SEARCH_MODES,
        default=defaults.mode,
        help="dense (vectors) or hybrid (vectors and BM25; the collection needs sparse "
        "vectors); default: the collection's",
    )
    options.add_argument(
        "--threshold",
        dest="score_threshold",
        type=_number(*limits(SearchOptions, "score_threshold")),
        default=defaults.score_threshold,
        metavar="SIMILARITY",
        help="leave out hits under this cosine similarity",
    )
    options.add_argument(
        "--article-id",
        dest="article_ids",
        action="append",
        default=defaults.article_ids,
        metavar="ID",
        help="only this article (repeat for any of several)",
    )
    options.add_argument(
        "--title",
        dest="titles",
        action="append",
        default=defaults.titles,
        metavar="TITLE",
        help="only the article with this exact title (repeat for any of several)",
    )
    options.add_argument(
        "--url",
        dest="urls",
        action="append",
        default=defaults.urls,
        metavar="URL",
        help="only the article at this URL (repeatable)",
    )
    options.add_argument(
        "--max-per-article",
        type=_whole_number(*limits(SearchOptions, "max_per_article")),
        default=defaults.max_per_article,
        metavar="N",
        help="at most N hits from one article",
    )
    options.add_argument(
        "--neighbours",
        type=_whole_number(*limits(SearchOptions, "neighbours")),
        default=defaults.neighbours,
        metavar="N",
        help="add up to N neighbouring chunks on each side of every hit, as its context",
    )
    options.add_argument(
        "--context",
        type=_whole_number(1),
        default=None,
        metavar="CHARS",
        help="print a numbered context block of at most CHARS characters, for a prompt, instead of the hits",
    )
    add_searcher_args(parser)
    return parser


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The search options the flags give (each flag's destination is its option's name)."""
    return SearchOptions.of(**{name: getattr(args, name) for name in SearchOptions.model_fields})


# Control characters from the corpus (ESC sequences, BEL, NUL, C1's CSI...) must not reach a
# terminal raw: a Wikipedia dump is data, not instructions to the user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_JSON_C1 = re.compile(r"[\x7f-\x9f]")  # json.dumps escapes C0 itself, not DEL and C1


def terminal_safe(text: str) -> str:
    """`text` with every control character but newline and tab shown as U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


def json_line(data: dict) -> str:
    """One JSON object on a line, every control character escaped (`\\u001b`, `\\u009b`):
    the text round-trips exactly and the terminal sees none of them raw."""
    return _JSON_C1.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False))


def format_hit(hit: Hit, width: int = 100) -> str:
    hit = hit.model_copy(
        update=dict(title=terminal_safe(hit.title), url=terminal_safe(hit.url), text=terminal_safe(hit.text))
    )
    snippet = textwrap.shorten(hit.text, width=240, placeholder=" …")
    body = textwrap.indent(textwrap.fill(snippet, width=width - 4), "    ")
    return f"{hit.rank}. {hit.title}  ({score_label(hit)})\n    {hit.url}\n{body}"


def score_label(hit: Hit) -> str:
    """What ranks the hit, as the search page shows it: the cosine in dense mode; in hybrid mode
    the fused rank score, with the cosine beside it (a lower cosine can rank higher: BM25 ranked it high)."""
    if abs(hit.score - hit.similarity) < 1e-6:
        return f"cosine {hit.similarity:.3f}"
    return f"score {hit.score:.3f}, cosine {hit.similarity:.3f}"


def _search(args: argparse.Namespace, open_searcher: OpenSearcher) -> int:
    options = search_options(args)
    with open_searcher() as searcher:
        if args.context is not None:
            context = searcher.context(args.query, options, max_chars=args.context)
        else:
            hits = searcher.search(args.query, options)
    if args.context is not None:
        print(json_line(context.model_dump()) if args.json else terminal_safe(context.text))
        found = bool(context.sources)
    else:
        for hit in hits:
            print(json_line(hit.model_dump()) if args.json else format_hit(hit))
        found = bool(hits)
    if not found:
        filtered = options.article_ids or options.titles or options.urls or options.score_threshold is not None
        log.warning(
            "no hits: %s", "none matched the filters or the threshold" if filtered else "the collection is empty"
        )
    return EXIT_OK


_search_main = searcher_command("python -m search", build_parser, _search)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:  # python -m search eval --questions FILE: retrieval quality
        return evaluation.main(argv[1:])
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    if argv[:1] == ["bench"]:  # python -m search bench: latency per search option
        return bench.main(argv[1:])
    if argv[:1] == ["mcp"]:  # python -m search mcp: the tools of an MCP server, on stdio
        try:  # the optional `mcp` extra: loaded only for this command
            server = importlib.import_module("search.mcp_server")
        except ImportError as exc:
            print(f"python -m search mcp: error: {exc}: pip install -e '.[mcp]'", file=sys.stderr)
            return EXIT_USAGE
        return server.main(argv[1:])
    return _search_main(argv)


def console() -> int:
    """`python -m search` and the `wiki-search` script: `main` with the Unix edge (a closed pipe, Ctrl-C)."""
    return edge_console(main, "search")


# -- python -m search serve ------------------------------------------------------------
SERVE_DESCRIPTION = """\
Serve the collection over HTTP: a FastAPI application on uvicorn.

  GET  /                        a search page (no token to load it; it asks for one if needed)
  GET  /health                  whether it is up, the collection and the model (no token)
  GET  /openapi.json            the OpenAPI 3.1 document of the routes (no token)
  GET  /search?q=...&k=5        ranked hits as JSON; also mode, score_threshold, article_id,
                                title, url (repeat them), max_per_article, neighbours, context_chars
  POST /search                  the same as a JSON body: {"query": "...", "k": 5, "titles": [...], ...}

Every search needs the header `Authorization: Bearer <token>`, where the token is the
environment variable SEARCH_API_TOKEN: without it the server refuses to start, unless
--open is given, which serves without a token, and only on a loopback host.

  export SEARCH_API_TOKEN=$(openssl rand -hex 32)
  python -m search serve --port 8000
  curl -H "Authorization: Bearer $SEARCH_API_TOKEN" 'http://127.0.0.1:8000/search?q=HAL+9000&k=3'
  python -m search serve --open                  # on 127.0.0.1, no token; open http://127.0.0.1:8000/

Errors are {"error": message}: 400 (not JSON), 401, 404, 405, 413 (too long), 422 (against
the schema), 503 (the store or the embedder failed). The URL is logged on stderr once the
collection is open, then one line per request (the path only). SIGINT (Ctrl-C) or SIGTERM
stops it (exit 0). Exit 1: the collection cannot be opened or the port is taken; exit 2:
bad usage (no token, --open on a non-loopback host).
"""


def build_serve_parser(env: dict[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m search serve",
        description=SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(parser, ServeSettings, (SERVE,), env, only=("host", "port"))
    parser.add_argument(
        "--open", action="store_true", help="serve without a token (SEARCH_API_TOKEN ignored); only on a loopback host"
    )
    add_flags(parser, ServeSettings, (SERVE,), env, only=("max_query_chars", "max_concurrent"))
    add_searcher_args(parser, env)
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (no access log)")
    return parser


def check_exposure(host: str, token: str | None, open_: bool) -> None:
    """Refuse to serve a search without a token anywhere but on this machine."""
    if open_ and not is_loopback(host):
        raise SettingsError(
            f"--open serves without a token, so only on a loopback host (127.0.0.1, ::1 or "
            f"localhost), not {host!r}: set {TOKEN_ENV} and drop --open to serve on {host}"
        )
    if not open_ and token is None:
        raise SettingsError(
            f"{TOKEN_ENV} is not set: every search must carry it as a bearer token. Set it "
            f"(export {TOKEN_ENV}=$(openssl rand -hex 32)), or pass --open to serve without "
            "one on a loopback host"
        )


def serve(argv: Sequence[str]) -> int:
    return run_command("python -m search serve", lambda edge: _serve(edge, argv), logger="search")


def _serve(edge: Edge, argv: Sequence[str]) -> int:
    args = build_serve_parser().parse_args(argv)
    token = (from_args(ServeSettings, args).token or "").strip() or None
    check_exposure(args.host, token, args.open)
    setup_logging(-1 if args.quiet else args.verbose)
    stores, embedders = store_settings(args), embedder_settings(args)
    edge.ready(args.verbose, qdrant=stores.address if stores.qdrant_url else None)
    if args.open:
        if token is not None:
            log.warning("--open: %s is ignored, /search answers without a token", TOKEN_ENV)
        token = None
    with Searcher.open(stores, embedders) as searcher:
        app = make_app(searcher, token=token, max_query_chars=args.max_query_chars, max_concurrent=args.max_concurrent)
        try:
            server = make_server(app, args.host, args.port)
        except OSError as exc:
            log.error("cannot listen on %s port %s: %s", args.host, args.port, exc)
            return EXIT_FAILED
        url = server_url(server)
        log.info(
            "serving %s (%s, %s) at %s/search%s; the search page: %s/",
            searcher.name,
            searcher.store.collection,
            searcher.spec.model.name,
            url,
            "" if token else ", without a token",
            url,
        )
        serve_until_stopped(server)
    log.info("stopped")
    return EXIT_OK
