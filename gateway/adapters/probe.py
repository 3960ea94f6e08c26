"""Asks Traefik whether a notebook answers at its host name: the only proof that it is reachable."""

from __future__ import annotations

import aiohttp

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=5)


class TraefikProbe:
    def __init__(self, session: aiohttp.ClientSession, traefik_url: str) -> None:
        self.session = session
        self.traefik_url = traefik_url.rstrip("/")

    async def reachable(self) -> bool:
        """True when Traefik itself answers (any HTTP status), whatever it routes."""
        try:
            async with self.session.get(
                f"{self.traefik_url}/", timeout=PROBE_TIMEOUT, allow_redirects=False
            ):
                return True
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def answers(self, host: str, cookies: dict[str, str] | None = None) -> bool:
        """True when Jupyter's /api answers through Traefik for this Host (with `cookies` to
        pass a guarded server's forward-auth)."""
        cookie = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
        try:
            async with self.session.get(
                f"{self.traefik_url}/api",
                headers={"Host": host, **({"Cookie": cookie} if cookie else {})},
                timeout=PROBE_TIMEOUT,
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    return False
                body = await response.json(content_type=None)
                return isinstance(body, dict) and "version" in body
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return False
