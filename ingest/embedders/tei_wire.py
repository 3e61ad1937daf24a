"""TEI's wire formats, as pure functions over bytes: what `GET /info` says, the
`/embed` and `/v1/embeddings` response bodies, error bodies and `Retry-After`.
Kept apart from the client (`ingest.embedders.tei`) so that they are measured
(`python -m ingest bench-tei`) and tested alone."""

from __future__ import annotations

import base64
import email.utils
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import httpx
import numpy as np
import orjson

# Statuses a TEI server (or a proxy in front of it) uses for "not now": overloaded,
# unhealthy, gateway trouble. Retried with backoff.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Statuses that mean "not this batch": a too-large batch or input (413 up to TEI 1.8,
# 422 from 1.9, 413 plain text over --payload-limit), an empty input (400), or the
# model backend failing on it (424, TEI's ErrorType::Backend): the batch is halved
# until the one input at fault is isolated, and everything else lands.
REJECT_STATUSES = frozenset({400, 413, 422, 424})


class Transient(Exception):
    """A status worth retrying, with the server's Retry-After if it sent one."""

    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.retry_after = status, message, retry_after


class Refused(Exception):
    """The server refused this batch as invalid; splitting it may isolate the culprit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The part of TEI's `GET /info` that shapes the client."""

    model_id: str
    max_input_length: int
    max_client_batch_size: int
    max_batch_tokens: int
    max_concurrent_requests: int | None = None
    model_sha: str | None = None
    pooling: str | None = None
    version: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> ServerInfo:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        missing = [k for k in ("model_id", "max_input_length", "max_client_batch_size") if k not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        model_type = data.get("model_type")
        embedding = model_type.get("embedding") if isinstance(model_type, dict) else None
        return cls(
            model_id=str(data["model_id"]),
            max_input_length=int(data["max_input_length"]),
            max_client_batch_size=int(data["max_client_batch_size"]),
            max_batch_tokens=int(data.get("max_batch_tokens") or 16384),
            max_concurrent_requests=int(data.get("max_concurrent_requests") or 0) or None,
            model_sha=data.get("model_sha"),
            pooling=embedding.get("pooling") if isinstance(embedding, dict) else None,
            version=data.get("version"),
        )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def error_message(response: httpx.Response) -> str:
    """TEI's `{"error": ..., "error_type": ...}` (or OpenAI-style `{"message": ...}`)
    message, or the plain-text body."""
    try:
        data = orjson.loads(response.content)
        if isinstance(data, dict) and ("error" in data or "message" in data):
            error = data.get("error", data.get("message"))
            if isinstance(error, dict):  # {"error": {"message": ...}}
                error = error.get("message", error)
            return str(error)[:500]
    except orjson.JSONDecodeError:
        pass
    return response.text[:500] or response.reason_phrase


def decode_vectors(content: bytes) -> np.ndarray:
    """TEI's `/embed` body (a JSON list of float lists) as a float32 matrix.

    orjson parses the floats, then one numpy conversion packs them: faster than
    `json.loads` + `np.array` and than text parsing in numpy (`np.fromstring`);
    the figures are in docs/measurements.md (python -m ingest bench-tei). Raises ValueError (or
    orjson.JSONDecodeError, a ValueError) on anything that is not a matrix."""
    vectors = np.asarray(orjson.loads(content), dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected a list of vectors, got an array of shape {vectors.shape}")
    return vectors


def decode_base64_vectors(content: bytes) -> np.ndarray:
    """An OpenAI-style `{"data": [{"embedding": <base64 float32>, "index": i}, ...]}`
    body as a float32 matrix: no float parsing at all, only base64. A server that
    ignored `encoding_format` and sent float lists is read as well."""
    data = orjson.loads(content)["data"]
    if any(item["index"] != i for i, item in enumerate(data)):
        data = sorted(data, key=lambda item: item["index"])
    if data and isinstance(data[0]["embedding"], list):
        return np.asarray([item["embedding"] for item in data], dtype=np.float32)
    raw = b"".join([base64.b64decode(item["embedding"]) for item in data])
    return np.frombuffer(raw, dtype="<f4").reshape(len(data), -1)


def checked_vectors(content: bytes, n: int, *, wire: str, dimension: int | None) -> np.ndarray:
    """A response body's vectors (`wire` "json" or "base64"), checked to be `n` of
    `dimension` (any, while it is not known yet); ValueError says what is wrong."""
    try:
        vectors = decode_base64_vectors(content) if wire == "base64" else decode_vectors(content)
    except (ValueError, TypeError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise ValueError(f"unreadable: {exc!r}") from exc
    dim = dimension or vectors.shape[1]
    if vectors.shape != (n, dim) or dim == 0:
        raise ValueError(f"vectors of shape {vectors.shape} for {n} inputs, expected ({n}, {dimension or 'dim'})")
    return vectors


def plan_batches(texts: Sequence[str], batch_size: int, max_chars: int) -> list[tuple[int, int]]:
    """(start, end) spans of at most `batch_size` inputs and `max_chars` characters (a
    longer single input travels alone)."""
    spans: list[tuple[int, int]] = []
    start, chars = 0, 0
    for i, text in enumerate(texts):
        size = len(text)
        if i > start and (i - start >= batch_size or chars + size > max_chars):
            spans.append((start, i))
            start, chars = i, 0
        chars += size
    if start < len(texts):
        spans.append((start, len(texts)))
    return spans
