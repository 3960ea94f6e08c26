"""Bounded retries with exponential backoff and jitter, for services that have bad minutes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    delay: float,
    transient: Callable[[Exception], bool],
    on_retry: Callable[[int, Exception, float], None],
    jitter: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `operation` up to `attempts` times. Waits delay, 2*delay, 4*delay... each scaled by a
    random factor between 0.5 and 1.5, so many clients do not retry in step. Errors that are not
    transient (a refused password) are raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return await operation()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            wait = delay * 2 ** (attempt - 1) * (0.5 + jitter())
            on_retry(attempt, exc, wait)
            await sleep(wait)
    raise AssertionError("unreachable: attempts must be at least 1")
