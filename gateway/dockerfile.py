"""The Dockerfile of a notebook image, rendered from a jinja2 template."""

from __future__ import annotations

from functools import cache
from importlib import resources

import jinja2

WORKDIR = "/home/jovyan/work"
START_SCRIPT = "/opt/notebook-gateway/start-notebook.py"
PORT = 8888


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gateway", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


@cache
def start_script() -> bytes:
    return resources.files("gateway").joinpath("templates/start-notebook.py").read_bytes()


def render_dockerfile(
    *, base_image: str, user: str, notebook_path: str, requirements: bool, shared: bool
) -> str:
    """base_image and user are validated settings; notebook_path is arbitrary and therefore
    only ever rendered as a JSON string."""
    return (
        _environment()
        .get_template("Dockerfile.j2")
        .render(
            base_image=base_image,
            user=user,
            requirements=requirements,
            shared=shared,
            start_script=START_SCRIPT,
            workdir=WORKDIR,
            port=PORT,
            command=["python3", START_SCRIPT, notebook_path],
        )
    )
