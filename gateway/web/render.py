"""The HTML pages' templates (gateway/templates/*.html.j2), autoescaped."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from aiohttp import web


@cache
def templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gateway", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def page(name: str, status: int = 200, **context: Any) -> web.Response:
    html = templates().get_template(name).render(**context)
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
