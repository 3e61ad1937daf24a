"""A Text Embeddings Inference (TEI 1.9) stand-in: real HTTP on loopback, for
rehearsals (`python -m ingest rehearse`), benchmarks and tests.

It speaks TEI's wire protocol (`POST /embed`, `GET /info`, `GET /health`, the
OpenAI-compatible `POST /v1/embeddings` with float or base64 vectors, error
bodies `{"error": ..., "error_type": ...}` and, on `/v1/embeddings`,
`{"message": ..., "code": ..., "type": ...}`, `max_client_batch_size` enforced
with 422 as TEI 1.9 does, or 413 as up to 1.8), held to TEI's own OpenAPI
document in the tests. Vectors come from one of three backends:

- an embedder (`TEIServer(embedder=LocalEmbedder())`): the real model;
- deterministic (default): a unit vector seeded by a hash of the text, so a test
  can compute the expected row with `ingest.embedders.fake.deterministic_vector(text)`;
- instant (`instant=True`): precomputed rows, no per-request compute, for benchmarks.

Faults (`Faults`) are injected per embedding request, and everything received is
counted in `server.received`. Two of them are a GPU's (upstream v1.9.3):

- a sick backend (`sick_after`): TEI answers 424 for every input of a backend batch
  that failed (`core/src/infer.rs:581-621`, `router/src/http/server.rs:1891-1901`),
  and once a batch failed, `GET /health` runs a forward pass and answers 503 while
  the backend stays broken (`backends/src/lib.rs:301-333, 541-566`,
  `router/src/http/server.rs:70-78`); a sticky CUDA fault fails every batch after it.
  (TEI's queue mixes the inputs of concurrent requests into one batch; here a request
  is a batch of its own, so a transient failure fails one request, not its neighbours);
- a dead router (`die_after`, the process form only): the router is built with
  `panic = "abort"` (`Cargo.toml:65-71`), and a sticky CUDA fault panics in a
  device buffer's drop, so the process ends (SIGABRT, exit 134) mid-run.

TEI sends no `Retry-After` with its 429s; `Faults.retry_after` adds one, as a proxy
in front of TEI might.

    with TEIServer(faults=Faults(burst_429=2)) as server:
        embedder = TEIEmbedder(server.url)
        assert server.received.statuses[429] == 2

Run as a process, it takes `text-embeddings-router`'s flags, so that
`ingest.sharded.tei_process.Router` starts it exactly as it starts TEI (`runner()` gives
the argv prefix), plus flags of its own for the faults:

    python -m ingest.rehearsal.tei --model-id BAAI/bge-small-en-v1.5 --port 8123 \
        --max-client-batch-size 32 --revision abc --auto-truncate --sick-after 40
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import orjson

from ingest.embedders.fake import DIMENSION, deterministic_vectors
from ingest.rehearsal.loopback import Handler, LoopbackServer

ERROR_TYPES = {
    400: "Empty",
    401: "Unauthorized",
    413: "Validation",
    422: "Validation",
    424: "Backend",
    429: "Overloaded",
    503: "Unhealthy",
}
FAULT_MESSAGES = {429: "Model is overloaded", 503: "unhealthy", 424: "Backend error: CUDA out of memory"}
# What a broken GPU's failed batch says (TEI wraps candle's error: `core/src/lib.rs:20-21`).
SICK_MESSAGE = 'Backend error: DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, "an illegal memory access was encountered")'
ABORT_EXIT = 134  # SIGABRT: a panic in a release build of the router (panic = "abort")


@dataclass
class Faults:
    """What goes wrong, per `/embed` request. In order of precedence: the first
    `burst_429` requests get 429; the next ones follow `script` (429, 503, 424,
    "drop", "slow" or None each); after that each request draws from the rates.
    `poison`: any batch with an input containing it is refused (like a too-long
    input with truncation off). `sick_after`: after that many embedding requests
    the backend is broken for good (every request 424, `/health` 503).
    `die_after`: after that many, the server stops (the process form exits 134)."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_424: float = 0.0
    drop_rate: float = 0.0  # close the connection without answering
    slow_rate: float = 0.0  # answer after `delay` seconds
    delay: float = 0.0
    burst_429: int = 0
    script: Sequence[int | str | None] = ()
    retry_after: str | None = None  # Retry-After header sent with 429 and 503
    poison: str | None = None
    sick_after: int | None = None
    die_after: int | None = None
    seed: int = 0


@dataclass
class Received:
    """What the server saw (all counts include refused and failed requests)."""

    paths: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)  # of /embed answers; "drop" for dropped
    batch_sizes: list[int] = field(default_factory=list)  # inputs per /embed request
    texts: list[str] = field(default_factory=list)  # every input received, in arrival order
    bodies: list[dict[str, Any]] = field(default_factory=list)  # /embed bodies without inputs
    requests: list[dict[str, Any]] = field(default_factory=list)  # whole bodies (when texts are recorded)
    authorization: list[str | None] = field(default_factory=list)

    @property
    def embed_requests(self) -> int:
        return len(self.batch_sizes)

    @property
    def inputs(self) -> int:
        return sum(self.batch_sizes)


class TEIServer(LoopbackServer):
    """TEI on 127.0.0.1, on a free port; a context manager with `.url`."""

    def __init__(
        self,
        embedder: Any = None,
        *,
        instant: bool = False,
        dimension: int = DIMENSION,
        model_id: str | None = None,
        max_client_batch_size: int = 32,
        max_batch_tokens: int = 16384,
        max_concurrent_requests: int = 512,
        max_input_length: int = 512,
        validation_status: int = 422,
        payload_limit: int = 2_000_000,
        api_key: str | None = None,
        faults: Faults | None = None,
        record_texts: bool = True,
    ) -> None:
        self.embedder = embedder
        if embedder is not None:
            dimension = embedder.spec.dimension
            model_id = model_id or embedder.spec.name
            max_input_length = embedder.spec.max_tokens
        self.dimension = dimension
        self.info = {
            "model_id": model_id or "test/deterministic",
            "served_model_name": model_id or "test/deterministic",
            "model_sha": None,
            "model_dtype": "float32",
            "model_type": {"embedding": {"pooling": "mean"}},
            "max_concurrent_requests": max_concurrent_requests,
            "max_input_length": max_input_length,
            "max_batch_tokens": max_batch_tokens,
            "max_batch_requests": None,
            "max_client_batch_size": max_client_batch_size,
            "auto_truncate": True,
            "tokenization_workers": 1,
            "version": "1.9.0" if validation_status == 422 else "1.8.0",
        }
        self.validation_status = validation_status
        self.payload_limit = payload_limit
        self.api_key = api_key
        self.faults = faults or Faults()
        self.record_texts = record_texts
        self.received = Received()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._embed_count = 0
        self.sick = False  # the backend is broken: every batch fails, /health answers 503
        self.dead = threading.Event()  # set once `die_after` requests came: the router is gone
        self._pool: list[bytes] = []
        if instant:
            rows = np.random.default_rng(0).standard_normal((1024, dimension)).astype(np.float32)
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
            self.instant_rows = rows
            self._pool = [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in rows]
            self._pool_base64 = [base64.b64encode(row.tobytes()).decode() for row in rows]

    # -- lifecycle --------------------------------------------------------------
    def set_faults(self, faults: Faults) -> None:
        """Swap the faults (and restart their sequence) between phases of a test."""
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._embed_count = 0

    def reset(self) -> None:
        with self._lock:
            self.received = Received()

    # -- backends -----------------------------------------------------------------
    def instant_vectors(self, n: int) -> np.ndarray:
        """What instant mode answers for a batch of `n` inputs."""
        return self.instant_rows[np.arange(n) % len(self._pool)]

    def _vectors(self, texts: list[str]) -> np.ndarray:
        if self._pool:
            return self.instant_vectors(len(texts))
        if self.embedder is not None:
            with self._model_lock:
                return self.embedder.embed_passages(texts).vectors
        return deterministic_vectors(texts, self.dimension)

    def _embed_body(self, texts: list[str]) -> bytes:
        """`/embed`'s answer: a list of float lists."""
        if self._pool:
            pool = self._pool
            return b"[" + b",".join([pool[i % len(pool)] for i in range(len(texts))]) + b"]"
        # orjson writes float32 in its shortest form, as TEI (serde_json) does.
        matrix = np.ascontiguousarray(self._vectors(texts), dtype=np.float32)
        return orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY)

    def _openai_body(self, texts: list[str], encoding: str) -> bytes:
        """`/v1/embeddings`' answer; base64 is the little-endian float32 bytes."""
        if self._pool and encoding == "base64":
            pool = self._pool_base64
            embeddings: list[Any] = [pool[i % len(pool)] for i in range(len(texts))]
        else:
            matrix = np.ascontiguousarray(self._vectors(texts), dtype="<f4")
            if encoding == "base64":
                embeddings = [base64.b64encode(row.tobytes()).decode() for row in matrix]
            else:
                embeddings = [row.tolist() for row in matrix]
        data = [{"object": "embedding", "embedding": e, "index": i} for i, e in enumerate(embeddings)]
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        return orjson.dumps({"object": "list", "data": data, "model": self.info["model_id"], "usage": usage})

    def _next_fault(self) -> int | str | None:
        with self._lock:
            faults, n = self.faults, self._embed_count
            self._embed_count += 1
            if faults.die_after is not None and n >= faults.die_after:
                self.dead.set()
                return "drop"
            if self.sick or (faults.sick_after is not None and n >= faults.sick_after):
                self.sick = True
                return "sick"
            if n < faults.burst_429:
                return 429
            if n - faults.burst_429 < len(faults.script):
                return faults.script[n - faults.burst_429]
            draw = self._rng.random()
        for fault, rate in (
            ("drop", faults.drop_rate),
            (429, faults.rate_429),
            (503, faults.rate_503),
            (424, faults.rate_424),
            ("slow", faults.slow_rate),
        ):
            if draw < rate:
                return fault
            draw -= rate
        return None

    # -- protocol -------------------------------------------------------------------
    def handle(self, request: Handler) -> None:
        path = request.path.split("?", 1)[0]
        if self.dead.is_set():  # the router is gone: nothing answers any more
            request.close_connection = True
            return
        with self._lock:
            self.received.paths[f"{request.command} {path}"] += 1
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            request.reply(401, b"", "text/plain")
        elif (request.command, path) == ("GET", "/info"):
            request.reply(200, orjson.dumps(self.info))
        elif (request.command, path) == ("GET", "/health"):
            if self.sick:  # the forward pass a failed backend's health check runs fails too
                self._error(request, 503, "unhealthy")
            else:
                request.reply(200, b"", "text/plain")
        elif (request.command, path) == ("POST", "/embed"):
            self._embed(request, openai=False)
        elif (request.command, path) == ("POST", "/v1/embeddings"):
            self._embed(request, openai=True)
        else:
            request.reply(404, b"", "text/plain")

    def _embed(self, request: Handler, *, openai: bool) -> None:
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length)
        if length > self.payload_limit:
            message = b"Failed to buffer the request body: length limit exceeded"
            return self._answer(request, 413, message, plain=True)
        try:
            body = orjson.loads(raw)
            key = "input" if openai else "inputs"
            inputs = body[key]
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if not all(isinstance(t, str) for t in texts):
                raise TypeError("inputs must be strings")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            message = f"Failed to deserialize the JSON body into the target type: {exc}"
            return self._answer(request, 422, message.encode(), plain=True)
        with self._lock:
            self.received.batch_sizes.append(len(texts))
            self.received.bodies.append({k: v for k, v in body.items() if k != key})
            self.received.authorization.append(request.headers.get("authorization"))
            if self.record_texts:
                self.received.texts.extend(texts)
                self.received.requests.append(body)
        fault = self._next_fault()
        if fault == "drop":
            with self._lock:
                self.received.statuses["drop"] += 1
            request.close_connection = True  # the socket closes with nothing written
            return None
        if fault == "slow":
            time.sleep(self.faults.delay)
        elif fault == "sick":
            return self._error(request, 424, SICK_MESSAGE, openai)
        elif isinstance(fault, int):
            return self._error(request, fault, FAULT_MESSAGES.get(fault, "fault"), openai)
        if not texts:
            return self._error(request, 400, "`inputs` cannot be empty", openai)
        limit = self.info["max_client_batch_size"]
        if len(texts) > limit:
            message = f"batch size {len(texts)} > maximum allowed batch size {limit}"
            return self._error(request, self.validation_status, message, openai)
        poison = self.faults.poison
        if poison and any(poison in t for t in texts):
            return self._error(request, self.validation_status, self.poison_message, openai)
        if openai:
            self._answer(request, 200, self._openai_body(texts, body.get("encoding_format") or "float"))
        else:
            self._answer(request, 200, self._embed_body(texts))

    @property
    def poison_message(self) -> str:
        n = self.info["max_input_length"]
        return f"Input validation error: `inputs` must have less than {n} tokens. Given: {n * 2}"

    def _error(self, request: Handler, status: int, message: str, openai: bool = False) -> None:
        error_type = ERROR_TYPES.get(status, "Backend")
        if openai:  # TEI's OpenAICompatErrorResponse: `error_type` is written "type" (http/types.rs:509-515)
            body = orjson.dumps({"message": message, "code": status, "type": error_type})
        else:
            body = orjson.dumps({"error": message, "error_type": error_type})
        headers = {}
        if status in (429, 503) and self.faults.retry_after is not None:
            headers["retry-after"] = self.faults.retry_after
        self._answer(request, status, body, headers=headers)

    def _answer(
        self, request: Handler, status: int, body: bytes, *, plain: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        with self._lock:
            self.received.statuses[status] += 1
        request.reply(status, body, "text/plain" if plain else "application/json", headers)
