"""Asks Traefik whether a notebook answers at its host name: the only proof that it is reachable.

Guarded hosts let it through with an admin session cookie minted for that host alone (it grants
nothing anywhere else), which it sends to unguarded hosts too, harmlessly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from gateway.sessions import SESSION_COOKIE, Signer

PATIENCE = 5.0  # seconds for one question that should answer at once
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=PATIENCE)
# A request that Traefik sends to a container that has just gone waits for a connection that
# never comes; a poller asks again sooner than that, with more patience after each such wait.
FIRST_PATIENCE, MOST_PATIENCE = 1.0, 8.0
PASS_TTL = 60.0


class TraefikProbe:
    def __init__(self, session: aiohttp.ClientSession, traefik_url: str, signer: Signer) -> None:
        self.session = session
        self.traefik_url = traefik_url.rstrip("/")
        self.signer = signer

    async def reachable(self) -> bool:
        """True when Traefik itself answers (any HTTP status), whatever it routes."""
        try:
            async with self.session.get(
                f"{self.traefik_url}/", timeout=PROBE_TIMEOUT, allow_redirects=False
            ):
                return True
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def activity(self, host: str) -> dict[str, Any] | None:
        """Jupyter's own view of its use (GET /api/status: last_activity, started, kernels,
        connections), through Traefik; None when it does not answer. Asking does not count
        as activity."""
        try:
            async with self._get(host, "/api/status", PATIENCE) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None
        return body if isinstance(body, dict) and "last_activity" in body else None

    @contextlib.asynccontextmanager
    async def _get(
        self, host: str, path: str, patience: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        session = self.signer.sign("session", {"admin": True, "h": host}, PASS_TTL)
        async with self.session.get(
            f"{self.traefik_url}{path}",
            headers={"Host": host, "Cookie": f"{SESSION_COOKIE}={session}"},
            timeout=aiohttp.ClientTimeout(total=patience),
            allow_redirects=False,
        ) as response:
            yield response

    async def answers(self, host: str, patience: float = PATIENCE) -> bool:
        """True when Jupyter answers through Traefik for this Host within `patience` seconds:
        /api/status, which Jupyter gives only to a request with its token, so an answer also
        proves that the route hands the token over (and asking is not activity)."""
        try:
            async with self._get(host, "/api/status", patience) as response:
                if response.status != 200:
                    return False
                body = await response.json(content_type=None)
                return isinstance(body, dict) and "started" in body
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return False
