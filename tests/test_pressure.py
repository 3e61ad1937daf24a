"""Backpressure: the adaptive limit on requests in flight, and the backoff's floor."""

from __future__ import annotations

import asyncio
import random

from ingest.embedders.pressure import AdaptiveLimit, backoff


def test_backoff_has_a_floor_doubles_and_honours_retry_after():
    rng = random.Random(1)
    waits = [backoff(n, floor=0.5, ceiling=8.0, retry_after=0.0, rng=rng) for n in range(1, 9) for _ in range(50)]
    assert min(waits) >= 0.5 and max(waits) <= 8.0  # Retry-After: 0 never means "at once"
    first = [backoff(1, floor=0.5, ceiling=8.0, rng=rng) for _ in range(50)]
    later = [backoff(6, floor=0.5, ceiling=8.0, rng=rng) for _ in range(50)]
    assert max(first) == 0.5 and sum(later) / 50 > 2.0  # doubling, with jitter above the floor
    assert backoff(1, floor=0.5, ceiling=8.0, retry_after=30.0) == 30.0


def test_the_limit_halves_on_overload_and_grows_back_one_at_a_time():
    async def scenario():
        limit = AdaptiveLimit(8)
        peak, inside = 0, 0

        async def request():
            nonlocal peak, inside
            async with limit:
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0.001)
                inside -= 1

        await asyncio.gather(*(request() for _ in range(40)))
        assert peak == 8
        limit.overloaded()
        limit.overloaded()
        assert limit.limit == 2 and limit.lowest == 2
        peak = 0
        await asyncio.gather(*(request() for _ in range(20)))
        assert peak <= 2
        for _ in range(2 + 3 + 4):  # `limit` successes in a row raise it by one
            await limit.succeeded()
        assert limit.limit == 5
        for _ in range(100):
            limit.overloaded()
        assert limit.limit == 1  # never below one
        for _ in range(1000):
            await limit.succeeded()
        assert limit.limit == 8  # never above the ceiling

    asyncio.run(scenario())
