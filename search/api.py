"""Query a collection: typed hits for RAG code.

The query is embedded with the model the collection records (and that model's
query instruction), so queries and passages always share one vector space.

The collection name is usually an alias (`ingest.state.rebuild`): a searcher resolves it
when it opens and queries that physical collection, so that a rebuild under way
never shows, and checks where the alias leads at most every `refresh_seconds`
(and whenever its collection is gone). When the alias has moved, it follows: with
the same embedder if the model is the same, with a new one (for the new model) if
it made its embedder itself; a searcher given an embedder of another model refuses.

>>> from search import Searcher
>>> with Searcher.open() as searcher:   # doctest: +SKIP
...     hits = searcher.search("the film where HAL 9000 turns on its crew", k=3)
>>> hits[0].title   # doctest: +SKIP
'2001: A Space Odyssey'

The options (`k`, `mode`, filters, ...) and the `Hit`s are `search.query`'s, which
every other way in (the command line, HTTP, MCP, the framework retrievers) shares.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

from ingest import lexical
from ingest.embedders import Embedder, make_embedder
from ingest.errors import CollectionMismatchError, SearchError, SearchUsageError, StoreError
from ingest.settings import EmbedderSettings, StoreSettings
from ingest.store import PayloadFilter, Store, open_store
from schemas import CollectionSpec, PointPayload, SchemaError, point_id
from search.context import Context, build_context, merge_passages
from search.query import Hit, SearchOptions

log = logging.getLogger(__name__)

__all__ = [
    "CONTEXT_K",
    "Hit",
    "SearchError",
    "SearchOptions",
    "SearchUsageError",
    "Searcher",
    "check_embedder",
    "search",
]

CONTEXT_K = 8  # hits a context block is built from, unless asked otherwise


class Searcher:
    """A store and the embedder its collection was built with, opened once for many queries."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        spec: CollectionSpec,
        *,
        name: str | None = None,
        refresh_seconds: float = 60.0,
        embedder_for: Callable[[CollectionSpec], Embedder] | None = None,
        owns_store: bool = True,
    ) -> None:
        self.store, self.embedder, self.spec = store, embedder, spec
        self.name = name or store.collection  # what the user asked for: an alias, usually
        self.refresh_seconds = refresh_seconds
        self._embedder_for = embedder_for  # None: the embedder was given, and is kept
        self._owns_store = owns_store
        self._checked = time.monotonic()
        self._moving = threading.Lock()  # one thread follows a moved alias; searches go on meanwhile

    @classmethod
    def open(
        cls,
        store_settings: StoreSettings | None = None,
        embedder_settings: EmbedderSettings | None = None,
        *,
        embedder: Embedder | None = None,
        store: Store | None = None,
        refresh_seconds: float = 60.0,
    ) -> Searcher:
        """Open the collection `store_settings.collection` leads to. `store` (a
        connection, whatever collection it is bound to) is shared and left open when
        given. An embedded store's folder is held by one process; its stores there share it."""
        store_settings = store_settings or StoreSettings()
        embedder_settings = embedder_settings or EmbedderSettings()
        name = store_settings.collection
        owns_store = store is None
        store = store or open_store(store_settings, create=False)
        try:
            collection = store.resolve(name).collection
            spec = store.at(collection).read_spec() if collection else None
            if spec is None:
                raise SearchError(
                    f"collection {name!r} does not exist at {store_settings.location} (or was not built by this "
                    "tool): run `python -m ingest` first"
                )
            wanted = embedder_settings.model
            if wanted and wanted != spec.model.name and embedder_settings.embedder == "local":
                raise CollectionMismatchError(
                    f"collection {name!r} was built with {spec.model.name!r}; "
                    f"queries embedded with {wanted!r} would not match it: drop --model"
                )
            embedder_for = None
            if embedder is None:

                def embedder_for(spec: CollectionSpec) -> Embedder:
                    return make_embedder(
                        embedder_settings, model=spec.model.name, query_instruction=spec.model.query_instruction
                    )

                embedder = embedder_for(spec)
            check_embedder(spec, embedder, name)
        except BaseException:
            if owns_store:
                store.close()
            raise
        searcher = cls(
            store.at(collection),
            embedder,
            spec,
            name=name,
            refresh_seconds=refresh_seconds,
            embedder_for=embedder_for,
            owns_store=owns_store,
        )
        searcher.store.warm()  # what the first hybrid query would otherwise wait for
        return searcher

    @property
    def default_mode(self) -> str:
        """Hybrid where the collection has sparse vectors, which does better on the
        shipped question sets (docs/measurements.md has the figures); dense otherwise."""
        return "hybrid" if self.spec.sparse else "dense"

    def search(self, query: str, options: SearchOptions | None = None, **changes: Any) -> list[Hit]:
        """The `k` best passages for `query`, searched as `options` say, with `changes`
        to them: the fields of `search.query.SearchOptions` (`k`, `mode`,
        `score_threshold`, `article_ids`, `titles`, `urls`, `max_per_article`,
        `neighbours`), as in `searcher.search("HAL 9000", k=3, mode="dense")`.

        A wrong option or an empty query is a `SearchUsageError` that names it."""
        options = SearchOptions.of(options, **changes)
        if not isinstance(query, str) or not query.strip():
            raise SearchUsageError("the query is empty")
        self.follow_alias()
        mode = self._mode(options)
        try:
            hits = self._search(query, options, mode)
        except Exception:
            if self.store.exists():
                raise
            self.follow_alias(force=True)  # dropped after a rebuild: the alias leads elsewhere now
            hits = self._search(query, options, self._mode(options))
        if options.neighbours:
            hits = self._with_neighbours(hits, options.neighbours)
        return hits

    def context(
        self,
        query: str,
        options: SearchOptions | None = None,
        *,
        max_chars: int | None = None,
        max_tokens: int | None = None,
        **changes: Any,
    ) -> Context:
        """The numbered RAG context block for `query` (`search.context.build_context`)
        from `search(query, options, **changes)`'s hits, CONTEXT_K of them unless
        `k` is given. A token budget is counted with the embedding model's
        tokenizer, a fair proxy for most LLMs' (pass your own counter to
        `build_context` otherwise)."""

        def count_tokens(text: str) -> int:
            counted = self.embedder.count_tokens([text])
            return counted[0] if counted else -(-len(text) // 4)  # no tokenizer: about 4 characters a token

        if options is None:
            changes.setdefault("k", CONTEXT_K)
        hits = self.search(query, options, **changes)
        return build_context(
            hits,
            max_chars=max_chars,
            max_tokens=max_tokens,
            count_tokens=count_tokens if max_tokens is not None else None,
        )

    def _mode(self, options: SearchOptions) -> str:
        """The mode to search with: the one asked for, or the collection's default."""
        mode = options.mode or self.default_mode
        if mode == "hybrid" and self.spec.sparse is None:
            raise SearchUsageError(
                f"collection {self.name!r} has no sparse vectors, so no hybrid search: use mode 'dense', or "
                "rebuild it with `python -m ingest --sparse bm25`"
            )
        return mode

    def _search(self, query: str, options: SearchOptions, mode: str) -> list[Hit]:
        store, embedder, spec = self.store, self.embedder, self.spec  # one collection, even if the alias moves
        k, score_threshold = options.k, options.score_threshold
        dense = embedder.embed_queries([query])[0]
        sparse = lexical.query_vector(query, spec.sparse) if mode == "hybrid" else None
        # A threshold drops fused hits after the fact: fetch more, so k can still be met.
        limit = k if score_threshold is None or mode == "dense" else 2 * k + 10
        found = store.search(
            dense,
            sparse=sparse,
            limit=limit,
            where=article_filter(options),
            score_threshold=score_threshold,
            group_size=options.max_per_article,
        )
        hits = [hit for hit in found if score_threshold is None or hit.similarity >= score_threshold][:k]
        out = []
        for rank, hit in enumerate(hits, start=1):
            payload = self._payload(hit.id, hit.payload)
            out.append(
                Hit(
                    rank=rank,
                    score=hit.score,
                    similarity=hit.similarity,
                    article_id=payload.id,
                    title=payload.title,
                    url=payload.url,
                    text=payload.text,
                    chunk_index=payload.chunk_index,
                    start=payload.start,
                    end=payload.end,
                    point_id=hit.id,
                )
            )
        return out

    def _payload(self, point: str, payload: Mapping[str, Any]) -> PointPayload:
        """A stored point's payload, read as ingest wrote it."""
        try:
            return PointPayload.from_dict(payload, point=point)
        except SchemaError as exc:
            raise StoreError(
                f"collection {self.store.collection!r} holds a point this search cannot read ({exc}): "
                "rebuild it with `python -m ingest`"
            ) from exc

    def _with_neighbours(self, hits: list[Hit], neighbours: int) -> list[Hit]:
        """Each hit with the text of up to `neighbours` chunks either side of it
        (fetched by their deterministic point ids), merged through their offsets."""
        wanted = {
            point_id(hit.article_id, index): (hit.article_id, index)
            for hit in hits
            for index in range(max(0, hit.chunk_index - neighbours), hit.chunk_index + neighbours + 1)
        }
        chunks = {
            wanted[pid]: self._payload(pid, payload)
            for pid, payload in self.store.payloads(list(wanted)).items()
            if pid in wanted
        }
        out = []
        for hit in hits:
            around = [
                (chunk.chunk_index, chunk.start, chunk.end, chunk.text)
                for index in range(hit.chunk_index - neighbours, hit.chunk_index + neighbours + 1)
                if (chunk := chunks.get((hit.article_id, index))) is not None
            ]
            if not around:
                around = [(hit.chunk_index, hit.start, hit.end, hit.text)]
            (passage, *rest) = merge_passages((start, end, text) for _, start, end, text in around)
            # rest is non-empty only if a neighbour is missing from the middle: keep the part with the hit
            for other in rest:
                if other.start <= hit.start < other.end:
                    passage = other
            inside = [index for index, start, end, _ in around if passage.start <= start and end <= passage.end]
            out.append(
                hit.model_copy(
                    update=dict(
                        context=passage.text,
                        context_first=min(inside, default=hit.chunk_index),
                        context_last=max(inside, default=hit.chunk_index),
                        context_start=passage.start,
                        context_end=passage.end,
                    )
                )
            )
        return out

    def follow_alias(self, *, force: bool = False) -> None:
        """Move to the collection the name leads to now, if it moved (checked at
        most every `refresh_seconds` unless `force`)."""
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_seconds:
            return
        if not self._moving.acquire(blocking=force):
            return  # another search is following it
        try:
            self._follow(now)
        finally:
            self._moving.release()

    def _follow(self, now: float) -> None:
        self._checked = now
        collection = self.store.resolve(self.name).collection
        if collection is None or collection == self.store.collection:
            return
        spec = self.store.at(collection).read_spec()
        if spec is None:
            return
        embedder = self.embedder
        try:
            check_embedder(spec, embedder, self.name)
        except CollectionMismatchError:
            if self._embedder_for is None:
                raise
            embedder = self._embedder_for(spec)
            check_embedder(spec, embedder, self.name)
            self.embedder.close()
        log.info("%s now leads to %s (was %s)", self.name, collection, self.store.collection)
        self.store, self.embedder, self.spec = self.store.at(collection), embedder, spec

    def close(self) -> None:
        self.embedder.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_embedder(spec: CollectionSpec, embedder: Embedder, collection: str) -> None:
    """Refuse a query embedder that is not the collection's model."""
    got = embedder.spec
    if got.name != spec.model.name or got.dimension != spec.dimension:
        raise CollectionMismatchError(
            f"collection {collection!r} was built with {spec.model.name!r} ({spec.dimension} dims) but the "
            f"query embedder serves {got.name!r} ({got.dimension} dims): point it at the same model"
        )
    if got.query_instruction != spec.model.query_instruction:
        raise CollectionMismatchError(
            f"collection {collection!r} expects the query instruction {spec.model.query_instruction!r}, "
            f"the embedder would use {got.query_instruction!r}"
        )


def article_filter(options: SearchOptions) -> PayloadFilter | None:
    """The store's filter for the articles `options` restrict the search to (each
    list given must hold; ids, titles and urls are indexed fields on a server)."""
    parts = {
        name: tuple(values)
        for name in ("article_ids", "titles", "urls")
        if (values := getattr(options, name)) is not None
    }
    return PayloadFilter(**parts) if parts else None


def search(
    query: str,
    options: SearchOptions | None = None,
    *,
    store_settings: StoreSettings | None = None,
    embedder_settings: EmbedderSettings | None = None,
    **changes: Any,
) -> list[Hit]:
    """One-shot search of the collection `store_settings` name, with the embedder
    `embedder_settings` describe (by default: ./qdrant_data, "wikipedia", the local
    model); open a `Searcher` to run many queries. `options` and `changes`: as
    `Searcher.search` takes them."""
    with Searcher.open(store_settings, embedder_settings) as searcher:
        return searcher.search(query, options, **changes)
