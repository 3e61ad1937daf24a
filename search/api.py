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
>>> with Searcher.open() as searcher:                     # ./qdrant_data, collection "wikipedia"
...     hits = searcher.search("the film where HAL 9000 turns on its crew", k=3)
>>> hits[0].title
'2001: A Space Odyssey'
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

from ingest import lexical
from ingest.embedders import Embedder, make_embedder
from ingest.errors import CollectionMismatchError, StoreError
from ingest.settings import EmbedderSettings, StoreSettings
from ingest.store import PayloadFilter, Store, open_store
from schemas import CollectionSpec, point_id
from search.context import Context, build_context, merge_passages

log = logging.getLogger(__name__)


class SearchError(StoreError):
    """The collection cannot be searched as asked."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One passage found. `score` ranks the hits (cosine similarity in dense mode,
    the fused reciprocal-rank score in hybrid mode); `similarity` is always the
    passage's cosine similarity to the query. `start`/`end` locate `text` in the
    article. With neighbours asked for, `context` is the text of this chunk and
    its neighbours (chunks `context_first` to `context_last`), merged."""

    rank: int
    score: float
    similarity: float
    article_id: str
    title: str
    url: str
    text: str
    chunk_index: int
    start: int
    end: int
    point_id: str
    context: str | None = None
    context_first: int | None = None
    context_last: int | None = None
    context_start: int | None = None
    context_end: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


MODES = ("dense", "hybrid")
MAX_K = 100
MAX_NEIGHBOURS = 5


class Searcher:
    """A store and the embedder its collection was built with, opened once for many queries."""

    def __init__(self, store: Store, embedder: Embedder, spec: CollectionSpec, *, name: str | None = None,
                 refresh_seconds: float = 60.0, embedder_for: Callable[[CollectionSpec], Embedder] | None = None,
                 owns_store: bool = True) -> None:
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
    ) -> "Searcher":
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
                    return make_embedder(embedder_settings, model=spec.model.name,
                                         query_instruction=spec.model.query_instruction)

                embedder = embedder_for(spec)
            check_embedder(spec, embedder, name)
        except BaseException:
            if owns_store:
                store.close()
            raise
        searcher = cls(store.at(collection), embedder, spec, name=name,
                       refresh_seconds=refresh_seconds, embedder_for=embedder_for, owns_store=owns_store)
        searcher.store.warm()  # what the first hybrid query would otherwise wait for
        return searcher

    @property
    def default_mode(self) -> str:
        """Hybrid where the collection has sparse vectors: it wins on the shipped
        question set (README, "Retrieval quality"); dense otherwise."""
        return "hybrid" if self.spec.sparse else "dense"

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        mode: str | None = None,
        score_threshold: float | None = None,
        article_ids: Sequence[str] | None = None,
        titles: Sequence[str] | None = None,
        urls: Sequence[str] | None = None,
        max_per_article: int | None = None,
        neighbours: int = 0,
    ) -> list[Hit]:
        """The `k` best passages for `query`.

        mode: "dense" (semantic only), "hybrid" (semantic and BM25 lexical, fused by
        reciprocal rank), or None for the collection's default. score_threshold:
        leave out passages whose cosine similarity to the query is lower.
        article_ids / titles / urls: only these articles (any of each list given).
        max_per_article: at most this many hits per article, so that one long
        article does not crowd out the others. neighbours: also fetch this many
        chunks either side of each hit, merged into `Hit.context`."""
        mode = self._check(query, k, mode, score_threshold, max_per_article, neighbours)
        self.follow_alias()
        try:
            hits = self._search(query, k, mode, score_threshold, payload_filter(article_ids, titles, urls),
                                max_per_article)
        except Exception:
            if self.store.exists():
                raise
            self.follow_alias(force=True)  # dropped after a rebuild: the alias leads elsewhere now
            mode = self._check(query, k, mode, score_threshold, max_per_article, neighbours)
            hits = self._search(query, k, mode, score_threshold, payload_filter(article_ids, titles, urls),
                                max_per_article)
        if neighbours:
            hits = self._with_neighbours(hits, neighbours)
        return hits

    def context(self, query: str, *, max_chars: int | None = None, max_tokens: int | None = None,
                k: int = 8, **search_args) -> Context:
        """The numbered RAG context block for `query` (`search.context.build_context`);
        a token budget is counted with the embedding model's tokenizer, a fair
        proxy for most LLMs' (pass your own counter to `build_context` otherwise)."""
        def count_tokens(text: str) -> int:
            counted = self.embedder.count_tokens([text])
            return counted[0] if counted else -(-len(text) // 4)  # no tokenizer: about 4 characters a token

        hits = self.search(query, k=k, **search_args)
        return build_context(hits, max_chars=max_chars, max_tokens=max_tokens,
                             count_tokens=count_tokens if max_tokens is not None else None)

    def _check(self, query: str, k: int, mode: str | None, score_threshold: float | None,
               max_per_article: int | None, neighbours: int) -> str:
        if not isinstance(query, str) or not query.strip():
            raise SearchError("the query is empty")
        if not 1 <= k <= MAX_K:
            raise SearchError(f"k must be between 1 and {MAX_K}, got {k}")
        mode = mode or self.default_mode
        if mode not in MODES:
            raise SearchError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "hybrid" and self.spec.sparse is None:
            raise SearchError(
                f"collection {self.name!r} has no sparse vectors, so no hybrid search: use mode 'dense', or "
                "rebuild it with `python -m ingest --sparse bm25`")
        if score_threshold is not None and not -1.0 <= score_threshold <= 1.0:
            raise SearchError(f"score_threshold is a cosine similarity, between -1 and 1; got {score_threshold}")
        if max_per_article is not None and max_per_article < 1:
            raise SearchError(f"max_per_article must be at least 1, got {max_per_article}")
        if not 0 <= neighbours <= MAX_NEIGHBOURS:
            raise SearchError(f"neighbours must be between 0 and {MAX_NEIGHBOURS}, got {neighbours}")
        return mode

    def _search(self, query: str, k: int, mode: str, score_threshold: float | None,
                where: PayloadFilter | None, max_per_article: int | None) -> list[Hit]:
        store, embedder, spec = self.store, self.embedder, self.spec  # one collection, even if the alias moves
        dense = embedder.embed_queries([query])[0]
        sparse = lexical.query_vector(query, spec.sparse) if mode == "hybrid" else None
        # A threshold drops fused hits after the fact: fetch more, so k can still be met.
        limit = k if score_threshold is None or mode == "dense" else 2 * k + 10
        found = store.search(dense, sparse=sparse, limit=limit, where=where,
                                  score_threshold=score_threshold, group_size=max_per_article)
        hits = [hit for hit in found if score_threshold is None or hit.similarity >= score_threshold][:k]
        return [
            Hit(
                rank=rank,
                score=hit.score,
                similarity=hit.similarity,
                article_id=str(hit.payload.get("id", "")),
                title=str(hit.payload.get("title", "")),
                url=str(hit.payload.get("url", "")),
                text=str(hit.payload.get("text", "")),
                chunk_index=int(hit.payload.get("chunk_index", 0)),
                start=int(hit.payload.get("start", 0)),
                end=int(hit.payload.get("end", 0)),
                point_id=hit.id,
            )
            for rank, hit in enumerate(hits, start=1)
        ]

    def _with_neighbours(self, hits: list[Hit], neighbours: int) -> list[Hit]:
        """Each hit with the text of up to `neighbours` chunks either side of it
        (fetched by their deterministic point ids), merged through their offsets."""
        wanted = {
            point_id(hit.article_id, index): (hit.article_id, index)
            for hit in hits
            for index in range(max(0, hit.chunk_index - neighbours), hit.chunk_index + neighbours + 1)
        }
        chunks = {
            wanted[pid]: payload for pid, payload in self.store.payloads(list(wanted)).items() if pid in wanted
        }
        out = []
        for hit in hits:
            around = [chunks[(hit.article_id, index)]
                      for index in range(hit.chunk_index - neighbours, hit.chunk_index + neighbours + 1)
                      if (hit.article_id, index) in chunks]
            if not around:
                around = [{"chunk_index": hit.chunk_index, "start": hit.start, "end": hit.end, "text": hit.text}]
            (passage, *rest) = merge_passages((int(c["start"]), int(c["end"]), str(c["text"])) for c in around)
            # rest is non-empty only if a neighbour is missing from the middle: keep the part with the hit
            for other in rest:
                if other.start <= hit.start < other.end:
                    passage = other
            inside = [int(c["chunk_index"]) for c in around
                      if passage.start <= int(c["start"]) and int(c["end"]) <= passage.end]
            out.append(replace(hit, context=passage.text, context_first=min(inside, default=hit.chunk_index),
                               context_last=max(inside, default=hit.chunk_index),
                               context_start=passage.start, context_end=passage.end))
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

    def __enter__(self) -> "Searcher":
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


def payload_filter(article_ids: Sequence[str] | None = None, titles: Sequence[str] | None = None,
                   urls: Sequence[str] | None = None) -> PayloadFilter | None:
    """Only the articles with one of these ids, one of these titles and one of these
    urls (each list that is given; a string is a list of one). Indexed fields on a server."""
    parts: dict[str, tuple[str, ...]] = {}
    for key, values in (("article_ids", article_ids), ("titles", titles), ("urls", urls)):
        if values is None:
            continue
        if isinstance(values, str):
            values = [values]
        if not values:
            raise SearchError(f"the {_FIELD[key]} filter is an empty list: nothing could match")
        parts[key] = tuple(str(v) for v in values)
    return PayloadFilter(**parts) if parts else None


_FIELD = {"article_ids": "id", "titles": "title", "urls": "url"}


def search(query: str, *, k: int = 5, store: StoreSettings | None = None,
           embedder: EmbedderSettings | None = None, **search_args) -> list[Hit]:
    """One-shot search; open a `Searcher` to run many queries. `search_args`:
    those of `Searcher.search`."""
    with Searcher.open(store, embedder) as searcher:
        return searcher.search(query, k=k, **search_args)
