"""Search over a collection built by `ingest`: `search()` for one query, `Searcher`
for many, `build_context` for a RAG prompt's numbered sources, `python -m search`
on the command line (and `python -m search serve` over HTTP)."""

from search.api import Hit, Searcher, SearchError, search
from search.context import Context, build_context

__all__ = ["Context", "Hit", "SearchError", "Searcher", "build_context", "search"]
