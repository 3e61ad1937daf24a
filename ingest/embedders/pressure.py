"""Backpressure for a client of a busy server: how many requests may be in flight,
and how long to wait before trying one again.

A TEI server answers 429 when its permits are full and 503 while it is not ready.
Retrying at once (a `Retry-After: 0`, or a jittered backoff that drew nearly 0)
only refills the queue that is full: under 60% 429s, nine quick attempts are
spent in milliseconds. So:

- `AdaptiveLimit` keeps at most `limit` requests in flight, halving it on each
  "overloaded" answer and raising it by one after `limit` answers in a row succeed
  (additive increase, multiplicative decrease, as TCP does), between 1 and the
  ceiling the caller chose;
- `backoff` waits at least a floor, doubling with the attempt, with full jitter
  above the floor, and never less than the server's `Retry-After`;
- the caller gives up after a time budget, not a count of attempts, and after a
  much shorter one when no server is there at all (`StopRetrying`).
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
from tenacity import RetryCallState
from tenacity.wait import wait_base

OVERLOAD_STATUSES = frozenset({429, 503})
NO_SERVER = (httpx.ConnectError, httpx.ConnectTimeout)  # nothing listens, or the host cannot be reached


class StopRetrying:
    """A tenacity stop: after `budget` seconds of retrying in all, or after `refused`
    seconds in which every attempt found no server (`NO_SERVER`). A busy server
    answers (429, 503) and is worth the whole budget; one that is gone answers
    nothing, and a run should say so in a minute, not in ten. One per request."""

    def __init__(self, budget: float, refused: float) -> None:
        self.budget, self.refused = budget, min(refused, budget)
        self._refused_since: float | None = None

    def __call__(self, state: RetryCallState) -> bool:
        failure = state.outcome.exception() if state.outcome else None
        if not isinstance(failure, NO_SERVER):
            self._refused_since = None
        elif self._refused_since is None:
            self._refused_since = time.monotonic()
        elif time.monotonic() - self._refused_since >= self.refused:
            return True
        return state.seconds_since_start is not None and state.seconds_since_start >= self.budget


class AdaptiveLimit:
    """At most `limit` holders at once, `limit` adapting between 1 and `ceiling`."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = self.limit = self.lowest = ceiling
        self.in_flight = 0
        self._succeeded = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimit:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    def overloaded(self) -> None:
        """The server said it is full: halve what may be in flight."""
        self.limit = max(1, self.limit // 2)
        self.lowest = min(self.lowest, self.limit)
        self._succeeded = 0

    async def succeeded(self) -> None:
        """An answer came back: after `limit` of them in a row, allow one more."""
        self._succeeded += 1
        if self._succeeded >= self.limit and self.limit < self.ceiling:
            self._succeeded = 0
            async with self._changed:
                self.limit += 1
                self._changed.notify_all()


def backoff(
    attempt: int, *, floor: float, ceiling: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds before attempt `attempt + 1` (`attempt` >= 1): at least `floor` and the
    server's `retry_after`, at most `ceiling` (unless `retry_after` says more)."""
    top = min(ceiling, floor * 2 ** (attempt - 1))
    wait = floor + (rng or random).uniform(0.0, max(top - floor, 0.0))
    return max(wait, retry_after or 0.0)


class Backoff(wait_base):
    """`backoff` as tenacity's wait: the attempt's number, and the Retry-After (capped
    at `cap`) of the exception that ended it, if it carries one (`retry_after`)."""

    def __init__(self, floor: float, ceiling: float, *, cap: float) -> None:
        self.floor, self.ceiling, self.cap = floor, ceiling, cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return backoff(
            retry_state.attempt_number,
            floor=self.floor,
            ceiling=self.ceiling,
            retry_after=min(retry_after, self.cap) if retry_after is not None else None,
        )


def cause(exc: BaseException | None) -> str:
    """What a retry was for, as a run summary counts it: the status, "timeout" or "connection"."""
    status = getattr(exc, "status", None)
    if status is not None:
        return str(status)
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "connection"


def tried(started: float, attempts: int | None) -> str:
    """How long a request was tried, for the message it fails with."""
    return f"{attempts} attempts" if attempts else f"retrying for {time.monotonic() - started:,.0f} s"
