"""Embedder backend for a Hugging Face Text Embeddings Inference (TEI) 1.x server.

The server does the model work; what is left here is the client's share, which
must stay small next to a GPU that embeds tens of thousands of chunks a second:
build request bodies with `orjson`, keep up to `max_concurrency` requests in
flight on one pooled `httpx.AsyncClient`, decode each JSON response straight
into a float32 block of the result, and retry what a busy server is expected to
answer (429 overloaded, 503 unhealthy, gateway errors, timeouts, dropped
connections). A batch the server refuses (413/422/400, or 424 when its backend
fails on an input) is halved until the one input it objects to is isolated; that
input becomes a `Rejection` and everything else lands.

A broken GPU is not a bad input. TEI answers 424 for every input of a backend batch
that failed, and once one failed, its `GET /health` runs a forward pass and answers
503 while the backend stays broken (v1.9.3: `core/src/infer.rs:581-621`,
`backends/src/lib.rs:301-333`). So a 424 is followed by a health check: a 503 there,
or a request every input of which came back 424, is a `BackendFailure`, raised at
once rather than turned into a dead letter per input. And when the caller says the
server's process is gone (`alive`), connection errors are not retried.

Two wire formats: `wire="json"` (default) posts to `/embed` and reads float
lists; `wire="base64"` posts to TEI's OpenAI-compatible `/v1/embeddings` with
`encoding_format: "base64"` and reads raw float32 bytes, which halves the bytes
on the wire and roughly doubles the chunks a client core can take (see
`python -m ingest bench-tei`). That route always normalizes and truncates as the
server's `--auto-truncate` says (on by default from TEI 1.9), not as `truncate`.
The client runs on a private event loop in a daemon thread, so the sync methods
of the `Embedder` protocol work from ordinary (and several) threads, and async
callers can await `aembed_passages` without handing their loop to our I/O. (One
class, on purpose; the wire formats and the event loop live beside it.)

>>> embedder = TEIEmbedder("http://localhost:8080", max_concurrency=8)   # doctest: +SKIP
>>> result = embedder.embed_passages(["Paris is the capital of France."])   # doctest: +SKIP
>>> result.vectors.shape, result.rejected   # doctest: +SKIP
((1, 384), [])
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar

import httpx
import numpy as np
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
)

from ingest.embedders.base import (
    PassageEmbeddings,
    Rejection,
    all_vectors,
    load_token_counter,
    with_query_instruction,
)
from ingest.embedders.event_loop import LoopThread, gather_all
from ingest.embedders.pressure import OVERLOAD_STATUSES, AdaptiveLimit, Backoff, StopRetrying, cause, tried
from ingest.embedders.tei_wire import (
    REJECT_STATUSES,
    RETRY_STATUSES,
    Refused,
    ServerInfo,
    Transient,
    checked_vectors,
    error_message,
    parse_retry_after,
    plan_batches,
)
from ingest.errors import BackendFailure, EmbedderError
from ingest.settings import redact_url
from schemas import KNOWN_MODELS, ModelSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

# Connection-level failures worth another try; others (bad URL scheme, proxy
# misconfiguration) are not.
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

CHARS_PER_TOKEN = 4  # English averages about 4 characters per BERT token.
# TEI's default --payload-limit is 2,000,000 bytes; JSON of non-ASCII text can take
# up to 4 bytes a character, so stay well below.
MAX_REQUEST_CHARS = 400_000
RETRY_AFTER_CAP = 300.0  # seconds; a longer Retry-After is more likely a bug than a plan
INFO_ATTEMPTS = 4  # a wrong URL should fail in seconds, not after the full retry budget
BACKEND_FAILED = 424  # TEI's ErrorType::Backend (router/src/http/server.rs:1891-1901)
PROBE_TEXT = "dimension probe"
_JSON_HEADERS = {"content-type": "application/json"}


class TEIEmbedder:
    """A TEI 1.x server behind the `Embedder` interface (see the module docstring).

    `batch_size` caps inputs per request (never above the server's
    `max_client_batch_size`); `max_batch_chars` caps characters per request
    (default: the server's `max_batch_tokens` at ~4 characters a token).
    `max_concurrency` requests are in flight at most, fewer when the server's
    `max_concurrent_requests` cannot hold that many batches (TEI 1.9 answers 429
    when in-flight inputs exceed it). `model_name` overrides the server's
    `model_id` (e.g. when TEI serves a local path) to find the model's query
    instruction in `KNOWN_MODELS`. `truncate=None` leaves truncation to the
    server's `--auto-truncate`.

    Backpressure (`ingest.embedders.pressure`): each 429 or 503 halves the requests
    in flight, which grow again by one per round of answers; a retry waits at least
    `retry_initial_wait` (even after `Retry-After: 0`), doubling up to
    `retry_max_wait`, jittered, or longer if Retry-After says so; a request gives
    up after `retry_budget` seconds of trying, or `refused_budget` seconds of finding
    no server. `retry_counts()` says how many retries there were, by cause.
    """

    def __init__(
        self,
        url: str,
        *,
        max_concurrency: int = 8,
        batch_size: int | None = None,
        max_batch_chars: int | None = None,
        timeout: float = 60.0,
        retry_budget: float = 600.0,
        refused_budget: float = 60.0,
        retry_initial_wait: float = 0.5,
        retry_max_wait: float = 30.0,
        truncate: bool | None = True,
        transport: httpx.AsyncBaseTransport | None = None,
        query_instruction: str | None = None,
        model_name: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        wire: str = "json",
        tokenizer: str | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        if wire not in ("json", "base64"):
            raise EmbedderError(f"unknown wire {wire!r}: use 'json' (/embed) or 'base64' (/v1/embeddings)")
        self.wire = wire
        self._route = "v1/embeddings" if wire == "base64" else "embed"
        self._tokenizer = load_token_counter(tokenizer) if tokenizer else None
        if max_concurrency < 1 or (batch_size is not None and batch_size < 1):
            raise EmbedderError("TEIEmbedder needs max_concurrency >= 1 and batch_size >= 1")
        if retry_budget <= 0:
            raise EmbedderError(f"the TEI retry budget must be positive, got {retry_budget} s")
        self.url = redact_url(url)
        self.retry_budget, self.refused_budget = retry_budget, min(refused_budget, retry_budget)
        self._alive = alive or (lambda: True)  # False once the server's process is known to be gone
        self.truncate = truncate
        self._wait = Backoff(retry_initial_wait, retry_max_wait, cap=RETRY_AFTER_CAP)
        self._retries: Counter[str] = Counter()
        self._limit = AdaptiveLimit(1)  # until /info says how many batches fit
        all_headers = dict(headers or {})
        if api_key:
            all_headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=url,
            headers=all_headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
        )
        self._loop = LoopThread()
        self._dimension: int | None = None
        try:
            self.info = self._loop.run(self._retrying("GET /info", self._get_info, INFO_ATTEMPTS))
            server_max = self.info.max_client_batch_size
            self.batch_size = min(server_max, batch_size or server_max)
            self.max_batch_chars = max_batch_chars or min(
                self.info.max_batch_tokens * CHARS_PER_TOKEN, MAX_REQUEST_CHARS
            )
            self.max_concurrency = self._fit_concurrency(max_concurrency)
            self._limit = AdaptiveLimit(self.max_concurrency)
            self._dimension = self._loop.run(self._probe_dimension())
            self.spec = self._make_spec(model_name or self.info.model_id, query_instruction)
        except BaseException:
            self.close()
            raise
        # An embedder dropped without close() must not leave its thread behind.
        weakref.finalize(self, self._loop.shutdown, self._client)

    def __repr__(self) -> str:
        return f"TEIEmbedder({self.url!r}, model={self.info.model_id!r})"

    async def _probe_dimension(self) -> int:
        try:
            probe = await self._retrying(f"POST /{self._route}", lambda: self._post([PROBE_TEXT]))
        except Refused as exc:
            if exc.status == BACKEND_FAILED:
                await self._check_backend(exc)
            raise EmbedderError(
                f"TEI server {self.url} refused a one-word /{self._route} request "
                f"({exc.status}: {exc.message}): "
                "is it serving an embedding model?"
            ) from exc
        return int(probe.shape[1])

    def _fit_concurrency(self, wanted: int) -> int:
        limit = self.info.max_concurrent_requests
        fits = max(1, limit // self.batch_size) if limit else wanted
        if fits < wanted:
            log.warning(
                "TEI %s admits %d concurrent inputs: %d requests of %d in flight, not %d "
                "(start TEI with --max-concurrent-requests %d to allow them)",
                self.url,
                limit,
                fits,
                self.batch_size,
                wanted,
                wanted * self.batch_size,
            )
        return min(wanted, fits)

    def _make_spec(self, name: str, query_instruction: str | None) -> ModelSpec:
        known = KNOWN_MODELS.get(name)
        dimension = self._dimension or 0
        if known and known.dimension != dimension:
            raise EmbedderError(
                f"TEI server {self.url} serves {dimension}-dimension vectors, but {name!r} has "
                f"{known.dimension}: check --model (or model_name) against the server's model"
            )
        instruction = known.query_instruction if known else ""
        return ModelSpec(
            name=name,
            dimension=dimension,
            max_tokens=self.info.max_input_length,
            revision=self.info.model_sha or (known.revision if known else None),
            pooling=self.info.pooling or (known.pooling if known else "mean"),
            normalize=True,
            query_instruction=instruction if query_instruction is None else query_instruction,
        )

    # -- Embedder protocol -------------------------------------------------
    def embed_passages(self, texts: Sequence[str]) -> PassageEmbeddings:
        return self._loop.run(self._embed(list(texts)))

    async def aembed_passages(self, texts: Sequence[str]) -> PassageEmbeddings:
        """`embed_passages` for async callers: the work runs on our loop and the
        caller's loop stays free while it waits."""
        return await asyncio.wrap_future(self._loop.submit(self._embed(list(texts))))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return all_vectors(
            self.embed_passages(with_query_instruction(self.spec, texts)), where=f"TEI server {self.url}", what="query"
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        """Counts with the served model's `tokenizer.json` when one was given (on the
        GPU workers it lies beside the weights); otherwise None: the chunker then
        budgets by characters alone and TEI truncates what is too long."""
        if self._tokenizer is None:
            return None
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def close(self) -> None:
        if hasattr(self, "_loop"):
            self._loop.shutdown(self._client)

    def __enter__(self) -> TEIEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- batching ------------------------------------------------------------
    def plan_batches(self, texts: Sequence[str]) -> list[tuple[int, int]]:
        """(start, end) spans of at most `batch_size` inputs and `max_batch_chars` characters."""
        return plan_batches(texts, self.batch_size, self.max_batch_chars)

    async def _embed(self, texts: list[str]) -> PassageEmbeddings:
        out = np.zeros((len(texts), self._dimension or 0), dtype=np.float32)
        rejected: list[Rejection] = []
        await gather_all(self._fill(texts[s:e], s, out, rejected) for s, e in self.plan_batches(texts))
        rejected.sort(key=lambda r: r.index)
        return PassageEmbeddings(out, rejected)

    async def _fill(self, texts: list[str], start: int, out: np.ndarray, rejected: list[Rejection]) -> None:
        """Embed one planned request's `texts` into `out[start:]` (`_split` below); a
        request every input of which the backend failed is a `BackendFailure`."""
        refused: list[Rejection] = []
        await self._split(texts, start, out, refused)
        failed = [r for r in refused if r.status == BACKEND_FAILED]
        if len(texts) > 1 and len(failed) == len(texts):
            raise BackendFailure(
                f"TEI server {self.url}: its backend failed every one of the {len(texts)} inputs "
                f"of a request ({BACKEND_FAILED}: {failed[0].message}): its GPU is likely broken"
            )
        rejected.extend(refused)

    async def _split(self, texts: list[str], start: int, out: np.ndarray, rejected: list[Rejection]) -> None:
        """Embed `texts` into `out[start:]`; on a refusal, split until the refused
        input is alone and record it (its row stays zero)."""
        try:
            vectors = await self._retrying(f"POST /{self._route}", lambda: self._post(texts))
            out[start : start + len(texts)] = vectors
        except Refused as exc:
            if exc.status == BACKEND_FAILED:
                await self._check_backend(exc)
            if len(texts) == 1:
                log.warning("TEI %s refused input %d (%d): %s", self.url, start, exc.status, exc.message)
                rejected.append(Rejection(start, exc.status, exc.message))
                return
            mid = len(texts) // 2
            await gather_all(
                [
                    self._split(texts[:mid], start, out, rejected),
                    self._split(texts[mid:], start + mid, out, rejected),
                ]
            )

    async def _check_backend(self, refusal: Refused) -> None:
        """After a 424: TEI's health check runs a forward pass once a batch failed, so a
        503 there means the backend is broken, not that an input is bad."""
        try:
            response = await self._client.get("health")
        except httpx.HTTPError:
            if not self._alive():
                raise BackendFailure(
                    f"TEI server {self.url} is gone (its process exited) after a failed "
                    f"batch ({refusal.status}: {refusal.message})"
                ) from None
            return  # unreachable for now: the retries of the next request decide
        if response.status_code == 503:
            raise BackendFailure(
                f"TEI server {self.url}: its backend failed a batch ({refusal.status}: "
                f"{refusal.message}) and its health check answers 503: its GPU is broken"
            )

    # -- HTTP ------------------------------------------------------------------
    def retry_counts(self) -> dict[str, int]:
        """Requests retried so far, by cause: a status ("429", "503", ...), "timeout", "connection"."""
        return dict(self._retries)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]], attempts: int | None = None) -> T:
        """Run `call` under the adaptive limit, retrying transient failures for up to
        the time budget (or `attempts`, for the start-up calls). The slot is held
        through the backoff, so an overloaded server sees fewer requests."""
        started = time.monotonic()
        retrying = AsyncRetrying(
            # a dead server's connection errors are not worth the retry budget
            retry=retry_if_exception_type((Transient, *TRANSIENT_ERRORS))
            & retry_if_exception(lambda exc: isinstance(exc, Transient) or self._alive()),
            stop=stop_after_attempt(attempts) if attempts else StopRetrying(self.retry_budget, self.refused_budget),
            wait=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async with self._limit:
                async for attempt in retrying:
                    with attempt:
                        result = await call()
                await self._limit.succeeded()
                return result
        except Transient as exc:
            raise EmbedderError(
                f"TEI server {self.url} still answered {exc.status} to {what} after "
                f"{tried(started, attempts)}: {exc.message}"
            ) from exc
        except TRANSIENT_ERRORS as exc:
            if not self._alive():
                raise BackendFailure(
                    f"TEI server {self.url} is gone (its process exited): {what} failed ({type(exc).__name__})"
                ) from exc
            raise EmbedderError(
                f"TEI server {self.url} failed {what} after {tried(started, attempts)} "
                f"({type(exc).__name__}: {exc}); check the URL and that the server is up"
            ) from exc
        except httpx.HTTPError as exc:
            raise EmbedderError(f"TEI server {self.url}: {what} failed ({type(exc).__name__}: {exc})") from exc
        raise AssertionError("unreachable")  # pragma: no cover - tenacity returns or raises

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self._retries[cause(exc)] += 1
        if isinstance(exc, Transient) and exc.status in OVERLOAD_STATUSES:
            self._limit.overloaded()
        # INFO, not WARNING: 429s are how a busy TEI asks for backpressure.
        log.info("TEI %s: %s: %s; retry %d in %.2fs", self.url, type(exc).__name__, exc, state.attempt_number, wait)

    async def _get_info(self) -> ServerInfo:
        response = await self._client.get("info")
        if response.status_code in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise Transient(response.status_code, error_message(response), retry_after)
        if response.status_code != 200:
            raise EmbedderError(
                f"TEI server {self.url} answered {response.status_code} to GET /info "
                f"({error_message(response)[:200]}): is this a text-embeddings-inference URL?"
            )
        try:
            return ServerInfo.from_json(orjson.loads(response.content))
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise EmbedderError(
                f"TEI server {self.url} sent an unusable /info ({exc}): is this a text-embeddings-inference URL?"
            ) from exc

    async def _post(self, texts: list[str]) -> np.ndarray:
        body: dict[str, Any]
        if self.wire == "base64":
            body = {"input": texts, "model": self.info.model_id, "encoding_format": "base64"}
        else:
            body = {"inputs": texts, "normalize": True}
            if self.truncate is not None:
                body["truncate"] = self.truncate
        response = await self._client.post(self._route, content=orjson.dumps(body), headers=_JSON_HEADERS)
        status = response.status_code
        if status == 200:
            return self._decode(response.content, len(texts))
        message = error_message(response)
        if status in RETRY_STATUSES:
            raise Transient(status, message, parse_retry_after(response.headers.get("retry-after")))
        if status in REJECT_STATUSES:
            raise Refused(status, message)
        raise EmbedderError(f"TEI server {self.url} answered {status} to POST /{self._route}: {message}")

    def _decode(self, content: bytes, n: int) -> np.ndarray:
        try:
            return checked_vectors(content, n, wire=self.wire, dimension=self._dimension)
        except ValueError as exc:
            raise EmbedderError(f"TEI server {self.url}: unusable /{self._route} response: {exc}") from exc
