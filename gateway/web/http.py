"""Reading requests: JSON bodies within a size limit, and query parameters."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.errors import BadRequest

MAX_NOTIFICATION = 64 * 1024  # {"project": ..., "action": ...} and server requests are tiny


async def json_body(request: web.Request, max_size: int | None = None) -> Any:
    """The body as JSON. Bounded by the app's client_max_size, or by max_size (413)."""
    declared = request.content_length or 0
    if max_size is not None and declared > max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=declared)
    raw = await request.read()
    if max_size is not None and len(raw) > max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=len(raw))
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None


def flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"query parameter {name!r} must be true or false")


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a whole number") from None
    if not low <= number <= high:
        raise BadRequest(f"query parameter {name!r} must be between {low} and {high}")
    return number
