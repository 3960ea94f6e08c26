"""Signed, expiring tokens: the session cookie a notebook host keeps, and the one-time ticket
that carries a login from the gateway to that host. Neither ever holds a GitLab token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

SESSION_COOKIE = "notebook_gateway_session"
TICKET_TTL = 60.0  # seconds between the login page and the notebook host


class Signer:
    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        # Derived, so the raw AUTH_TOKEN is never used as a key for anything else.
        self._key = hashlib.sha256(b"notebook-gateway sessions\0" + secret.encode()).digest()
        self._clock = clock
        self._used_tickets: dict[str, float] = {}
        self.revoked: dict[str, float] = {}  # session id -> when it would have expired

    def sign(self, purpose: str, payload: dict[str, Any], ttl: float) -> str:
        body = _encode(json.dumps({**payload, "exp": self._clock() + ttl}, sort_keys=True).encode())
        return f"{body}.{self._mac(purpose, body)}"

    def verify(self, purpose: str, token: str) -> dict[str, Any] | None:
        """The payload, or None if the token is forged, for another purpose, or expired."""
        body, _, mac = token.partition(".")
        if not body or not hmac.compare_digest(mac, self._mac(purpose, body)):
            return None
        try:
            payload = json.loads(_decode(body))
        except ValueError:
            return None
        if not isinstance(payload, dict) or payload.get("exp", 0) < self._clock():
            return None
        if payload.get("sid") in self.revoked:
            return None
        return payload

    def revocable(self, purpose: str, payload: dict[str, Any], ttl: float) -> str:
        """A signed token with an id of its own, which revoke() can take back."""
        return self.sign(purpose, {**payload, "sid": secrets.token_hex(12)}, ttl)

    def revoke(self, purpose: str, token: str) -> tuple[str, float] | None:
        """Take a revocable token back for good: its id and expiry, to be kept as long as it
        would have lasted (None if it was not valid anyway)."""
        payload = self.verify(purpose, token)
        if payload is None or not isinstance(sid := payload.get("sid"), str):
            return None
        now = self._clock()
        self.revoked = {s: exp for s, exp in self.revoked.items() if exp > now}
        self.revoked[sid] = float(payload["exp"])
        return sid, self.revoked[sid]

    def ticket(self, payload: dict[str, Any]) -> str:
        return self.sign("ticket", {**payload, "nonce": secrets.token_hex(8)}, TICKET_TTL)

    def redeem(self, ticket: str) -> dict[str, Any] | None:
        """A ticket's payload, once: a second use of the same ticket is refused."""
        payload = self.verify("ticket", ticket)
        if payload is None:
            return None
        now = self._clock()
        self._used_tickets = {n: exp for n, exp in self._used_tickets.items() if exp > now}
        nonce = str(payload.get("nonce"))
        if nonce in self._used_tickets:
            return None
        self._used_tickets[nonce] = float(payload["exp"])
        return payload

    def _mac(self, purpose: str, body: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\0{body}".encode(), hashlib.sha256).digest()
        return _encode(digest)


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
