"""What a Qdrant server's answer is worth another try, and how long to wait: timeouts,
dropped connections, 5xx, gRPC UNAVAILABLE, and a rate limit, after the server's
`Retry-After` (strict mode's write limit answers 429 with it: Qdrant v1.19.0
`src/actix/helpers.rs:210-259`; qdrant-client 1.20 raises `ResourceExhaustedResponse`
for it over REST and gRPC alike, `http/api_client.py:118-127`, `connection.py:137-150`)."""

from __future__ import annotations

from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, wait_random_exponential


def is_transient(exc: BaseException) -> bool:
    """Server hiccups worth retrying: timeouts, dropped connections, 5xx, gRPC
    UNAVAILABLE, and a rate limit (429; qdrant-client raises `ResourceExhaustedResponse`
    when Qdrant sent a `Retry-After`, over REST and gRPC alike)."""
    if isinstance(exc, (ResponseHandlingException, ResourceExhaustedResponse)):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in (429, 500, 502, 503, 504)
    try:
        import grpc  # qdrant-client's dependency, but only its gRPC path needs it
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return False


_jitter = wait_random_exponential(multiplier=0.5, max=20)  # full jitter; no API deprecated in tenacity 9


def _wait(state: RetryCallState) -> float:
    """The jittered backoff, and never less than a rate limit's `Retry-After`."""
    exc = state.outcome.exception() if state.outcome else None
    return max(_jitter(state), float(getattr(exc, "retry_after_s", 0) or 0))


retry_transient = retry(
    retry=retry_if_exception(is_transient),
    wait=_wait,
    stop=stop_after_attempt(8),
    reraise=True,
)
