"""Reading requests: JSON bodies within a size limit, and query parameters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from gateway.errors import BadRequest, RequestTimeout
from gateway.web.keys import SETTINGS

T = TypeVar("T")

MAX_NOTIFICATION = 64 * 1024  # {"project": ..., "action": ...} and server requests are tiny


MAX_DEPTH = 32  # GitLab's push events nest five deep; nothing the gateway reads needs more


async def json_body(request: web.Request, max_size: int | None = None) -> Any:
    """The body as JSON, nested at most MAX_DEPTH deep. Bounded by the app's client_max_size,
    or by max_size (413), and in time by HTTP_TIMEOUT (408)."""
    declared = request.content_length or 0
    if max_size is not None and declared > max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=declared)
    raw = await _in_time(request, request.read())
    if max_size is not None and len(raw) > max_size:
        raise web.HTTPRequestEntityTooLarge(max_size=max_size, actual_size=len(raw))
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    too_deep = BadRequest(f"the request body is nested more than {MAX_DEPTH} levels deep")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    except RecursionError:  # deeper than the parser itself goes
        raise too_deep from None
    if _deeper_than(value, MAX_DEPTH):
        raise too_deep
    return value


async def form_body(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """A form's fields, within HTTP_TIMEOUT (408)."""
    return await _in_time(request, request.post())


async def _in_time(request: web.Request, reading: Awaitable[T]) -> T:
    """A body that trickles in is given up on: it would hold the request open for ever."""
    try:
        async with asyncio.timeout(request.app[SETTINGS].http_timeout):
            return await reading
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive in time") from None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep; without recursion."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, dict | list) for item in level)


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
