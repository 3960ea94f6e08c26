"""Bearer-token authentication, compared in constant time."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.errors import Unauthorized
from gateway.web.keys import SETTINGS


def require_admin(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <AUTH_TOKEN>'"
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <AUTH_TOKEN>'")
    expected = request.app[SETTINGS].auth_token.get_secret_value().encode()
    if not hmac.compare_digest(token.strip().encode(), expected):
        raise Unauthorized("invalid token")
