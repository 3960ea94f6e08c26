"""The gateway's templates (gateway/templates/), loaded one way. HTML pages are autoescaped;
Dockerfiles and URL.md are not: what they put in, they escape themselves (the functions
handed to the template say how)."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


@cache
def _environment(html: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gateway", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=not html,
    )


def render(name: str, **context: Any) -> str:
    return _environment(name.endswith(".html.j2")).get_template(name).render(**context)
