"""A reverse proxy in front of a real service that fails the first requests with 503: the
service's "bad minute". Bodies are streamed both ways, so image layers pass through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
FAILURES = web.AppKey("failures", list[str])


def faulty_proxy(upstream: str, fail_first: int) -> web.Application:
    failed: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        if len(failed) < fail_first:
            failed.append(f"{request.method} {request.path}")
            return web.Response(status=503, text="service unavailable (injected)")
        session: aiohttp.ClientSession = request.app[SESSION]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(
            request.method,
            f"http://{upstream}{request.path_qs}",
            headers=headers,  # Host stays the proxy's, so the registry's Location URLs point here
            data=request.content if request.can_read_body else None,
            allow_redirects=False,
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            for key, value in answer.headers.items():
                if key.lower() not in HOP_BY_HOP | {"content-length"}:
                    response.headers[key] = value
            if answer.content_length is not None:
                response.content_length = answer.content_length
            await response.prepare(request)
            async for chunk in answer.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            app[SESSION] = session
            yield

    app = web.Application(client_max_size=1024**3)
    app[FAILURES] = failed
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{path:.*}", forward)
    return app


SESSION = web.AppKey("session", aiohttp.ClientSession)
