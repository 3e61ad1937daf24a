"""Semantic search over a collection built by `ingest`: `search()` for one query,
`Searcher` for many, `python -m search QUERY` on the command line."""

from search.api import Hit, SearchError, Searcher, search

__all__ = ["Hit", "SearchError", "Searcher", "search"]
