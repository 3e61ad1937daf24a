"""A search request over HTTP, parsed and checked: from a JSON body (`parse_search`)
or a query string (`parse_query_string`), into a `SearchRequest`, or an `HTTPError`
whose message names the field at fault and what it accepts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs

from search.api import MAX_K, MAX_NEIGHBOURS, MODES
from search.openapi import MAX_CONTEXT_CHARS, QUERY_PARAMETERS

DEFAULT_MAX_QUERY_CHARS = 2000


class HTTPError(Exception):
    """An answer other than 200: its status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, list(headers)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A validated search: what `Searcher.search` and `build_context` are called with."""

    query: str
    k: int = 5
    mode: str | None = None
    score_threshold: float | None = None
    article_ids: tuple[str, ...] | None = None
    titles: tuple[str, ...] | None = None
    urls: tuple[str, ...] | None = None
    max_per_article: int | None = None
    neighbours: int = 0
    context_chars: int | None = None

    def search_options(self) -> dict[str, Any]:
        """The keyword arguments of `Searcher.search` beyond query and k: only those
        asked for, so that the searcher's own defaults apply to the rest."""
        options = {"mode": self.mode, "score_threshold": self.score_threshold, "article_ids": self.article_ids,
                   "titles": self.titles, "urls": self.urls, "max_per_article": self.max_per_article,
                   "neighbours": self.neighbours or None}
        return {name: value for name, value in options.items() if value is not None}


FIELDS = tuple(SearchRequest.__dataclass_fields__)
REPEATED = {"article_ids", "titles", "urls"}  # lists: repeated parameters in a query string
WHOLE_NUMBERS = {"k", "max_per_article", "neighbours", "context_chars"}


def parse_search(fields: Mapping[str, Any], *, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> SearchRequest:
    """Check a JSON body's fields (or the query string's, converted); HTTPError 400 or 413 when wrong."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise HTTPError(400, f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(_show, unknown))}: "
                             f"the fields are {', '.join(FIELDS)}")
    query = fields.get("query")
    if query is None:
        raise HTTPError(400, "the query is missing: give it as 'query' in a JSON body, or ?q= in the URL")
    if not isinstance(query, str):
        raise HTTPError(400, f"query must be a string, got {_kind(query)}")
    if not query.strip():
        raise HTTPError(400, "the query is empty")
    _unicode("query", query)
    if len(query) > max_query_chars:
        raise HTTPError(413, f"the query is {len(query):,} characters long; the limit is {max_query_chars:,}")
    mode = fields.get("mode")
    if mode is not None and not isinstance(mode, str):
        raise HTTPError(400, f"mode must be a string ({' or '.join(MODES)}), got {_kind(mode)}")
    if mode is not None:
        _unicode("mode", mode)
    threshold = fields.get("score_threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise HTTPError(400, f"score_threshold must be a number, got {_kind(threshold)}")
    return SearchRequest(
        query=query,
        k=_int(fields, "k", 5, low=1, high=MAX_K),
        mode=mode,
        score_threshold=None if threshold is None else float(threshold),
        article_ids=_strings(fields, "article_ids"),
        titles=_strings(fields, "titles"),
        urls=_strings(fields, "urls"),
        max_per_article=_int(fields, "max_per_article", None, low=1),
        neighbours=_int(fields, "neighbours", 0, low=0, high=MAX_NEIGHBOURS),
        context_chars=_int(fields, "context_chars", None, low=1, high=MAX_CONTEXT_CHARS),
    )


def parse_query_string(query_string: str, *, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> SearchRequest:
    """`?q=...&k=5&title=A&title=B` as a SearchRequest (the parameters of `QUERY_PARAMETERS`)."""
    try:
        pairs = parse_qs(query_string, keep_blank_values=True, max_num_fields=200)
    except ValueError as exc:
        raise HTTPError(400, f"the query string cannot be read: {exc}") from exc
    unknown = sorted(set(pairs) - set(QUERY_PARAMETERS))
    if unknown:
        raise HTTPError(400, f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(_show, unknown))}: "
                             f"the parameters are {', '.join(QUERY_PARAMETERS)}")
    fields: dict[str, Any] = {}
    for name, values in pairs.items():
        field = QUERY_PARAMETERS[name]
        if field in REPEATED:
            fields[field] = values
            continue
        if len(values) > 1:
            raise HTTPError(400, f"{name} is given {len(values)} times; give it once")
        fields[field] = _convert(name, field, values[0])
    return parse_search(fields, max_query_chars=max_query_chars)


def _convert(name: str, field: str, raw: str) -> Any:
    """A query-string value as the JSON value it stands for."""
    if field in WHOLE_NUMBERS:
        try:
            return int(raw)
        except ValueError:
            raise HTTPError(400, f"{name} must be a whole number, got {_show(raw)}") from None
    if field == "score_threshold":
        try:
            return float(raw)
        except ValueError:
            raise HTTPError(400, f"{name} must be a number, got {_show(raw)}") from None
    return raw


def _int(fields: Mapping[str, Any], name: str, default: int | None, *, low: int, high: int | None = None) -> int | None:
    value = fields.get(name)
    if value is None:
        return default
    bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(400, f"{name} must be a whole number {bounds}, got {_kind(value)}")
    if value < low or (high is not None and value > high):
        raise HTTPError(400, f"{name} must be {bounds}, got {value}")
    return value


def _strings(fields: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    values = fields.get(name)
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise HTTPError(400, f"{name} must be a list of strings, got {_kind(values)}")
    if not values or not all(v.strip() for v in values):
        raise HTTPError(400, f"{name} must hold at least one value, and no empty one")
    for value in values:
        _unicode(name, value)
    return tuple(values)


def _unicode(name: str, value: str) -> None:
    """JSON may spell a lone surrogate ("\\ud800"), which is no character at all."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HTTPError(400, f"{name} holds a lone surrogate ({value[exc.start]!r} at {exc.start}): send valid "
                             "Unicode") from None


def _kind(value: Any) -> str:
    """A value as its JSON type, for messages: `'5' (a string)`."""
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "an array",
             dict: "an object", type(None): "null"}
    kind = names.get(type(value), type(value).__name__)
    return kind if isinstance(value, (list, dict, type(None))) else f"{_show(value)} ({kind})"


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
