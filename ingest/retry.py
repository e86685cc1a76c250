"""How long the worker waits before trying again: one backoff formula for every retry loop.

The worker never gives up on a failure of a server (Kafka, the object store, the catalog): it
waits and tries again, so nothing is acknowledged, hence committed, before it is done. The wait
doubles with each attempt up to a cap, so a long outage costs one try every ``cap`` seconds and
a short one is over within a second or two.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``base`` seconds doubled at each attempt (at most ``max_doublings`` times), never over ``cap``.

    With the defaults: 1, 2, 4, 8, 16, then 30 s for every attempt after the fifth."""

    base: float = 0.5
    max_doublings: int = 6
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (the first is 1)."""
        return min(self.cap, self.base * 2 ** min(max(attempt, 0), self.max_doublings))

    async def until_done(self, call: Callable[[], Awaitable[T]],
                         on_failure: Callable[[int, float, Exception], None]) -> T:
        """Await ``call()`` until it returns; after each failure ``on_failure(attempt, delay,
        error)`` counts and logs it, then the policy's delay passes."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except Exception as exc:  # noqa: BLE001 - a server's failure of any kind: wait, try again
                delay = self.delay(attempt)
                on_failure(attempt, delay, exc)
                await asyncio.sleep(delay)
