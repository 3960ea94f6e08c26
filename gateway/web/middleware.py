"""Middlewares: every error as one JSON envelope ({"error": {"code", "message", "detail"}}),
and rate limiting of the endpoints that start work (429 with Retry-After)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import logs
from gateway.errors import GatewayError, RateLimited, RequestTimeout
from gateway.schemas import ErrorBody, ErrorEnvelope
from gateway.web import views
from gateway.web.keys import RATE_LIMITER, REDACT, SETTINGS

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    redact = request.app[REDACT]
    envelope = ErrorEnvelope(error=ErrorBody(code=code, message=message, detail=detail))
    body = json.dumps(views.dump(envelope))
    return web.Response(
        status=status, text=redact(body), content_type="application/json", headers=headers
    )


REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id (the caller's X-Request-Id if it is a plain token), which is on
    each log line written while it is handled and on the answer."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
    logs.request_id.set(rid)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = rid
        raise
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        response = error_response(
            request, exc.status, exc.code, exc.message, exc.detail, exc.headers
        )
        if isinstance(exc, RequestTimeout):
            response.force_close()  # rather than wait for the rest of a body that trickles
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if isinstance(exc, web.HTTPRequestEntityTooLarge):
            message = f"the request body is over the size limit ({exc.text})"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(
            request, exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, None, headers
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(request, 500, "internal_error", "internal server error")


LIMITED = {
    ("POST", "/projects"),
    ("DELETE", "/projects"),
    ("POST", "/reconcile"),
    ("POST", "/servers"),
}


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    limiter = request.app.get(RATE_LIMITER)
    prefix = request.app[SETTINGS].servers_api_prefix
    path = request.path.removeprefix(prefix) if prefix else request.path
    if limiter is not None and (request.method, path) in LIMITED:
        wait = limiter.wait_time(request.remote or "")
        if wait > 0:
            raise RateLimited(wait)
    return await handler(request)
