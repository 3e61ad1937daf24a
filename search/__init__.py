"""Search over a collection built by `ingest`: `search()` for one query, `Searcher`
for many, `build_context` for a RAG prompt's numbered sources, `python -m search`
on the command line (and `python -m search serve` over HTTP)."""

from search.api import Hit, Searcher, SearchError, SearchOptions, SearchUsageError, search
from search.context import Citation, Context, build_context

__all__ = [
    "Citation",
    "Context",
    "Hit",
    "SearchError",
    "SearchOptions",
    "SearchUsageError",
    "Searcher",
    "build_context",
    "search",
]
