"""The HTML pages' templates (gateway/templates/*.html.j2), autoescaped."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.templating import render


def page(name: str, status: int = 200, **context: Any) -> web.Response:
    html = render(name, **context)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        # The pages load nothing from elsewhere and may not be framed.
        headers={
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
