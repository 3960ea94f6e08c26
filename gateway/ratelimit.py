"""A token bucket per client address."""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_CLIENTS = 10_000  # forget full buckets beyond this many addresses


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait_time(self, client: str) -> float:
        """0 when the request may go ahead (and is counted), else seconds until it may."""
        wait = self.blocked_for(client)
        if wait == 0:
            self.spend(client)
        return wait

    def blocked_for(self, client: str) -> float:
        """Seconds until `client` may go on (0: it may now); counts nothing."""
        tokens = self._tokens(client, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def spend(self, client: str) -> None:
        """Count one against `client` (a request, or a failed attempt)."""
        now = self.clock()
        self._buckets[client] = (max(0.0, self._tokens(client, now) - 1), now)
        self._forget_idle(now)

    def _tokens(self, client: str, now: float) -> float:
        tokens, last = self._buckets.get(client, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) <= MAX_CLIENTS:
            return
        refill = self.capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}
