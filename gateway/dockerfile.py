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


def start_command(notebook_path: str, ui: str = "/lab") -> list[str]:
    """How the image starts Jupyter; user servers pass their own at run time."""
    return ["python3", START_SCRIPT, notebook_path, ui]


def render_dockerfile(
    *,
    base_image: str,
    user: str,
    notebook_path: str,
    requirements: bool,
    shared: bool,
    notebook: bool = True,
) -> str:
    """base_image and user are validated settings; notebook_path is arbitrary and therefore
    only ever rendered as a JSON string. Without `notebook`, the image holds no notebook/ layer
    (a user server's whole repository is in shared/)."""
    template = _environment().get_template("Dockerfile.j2")
    return template.render(
        base_image=base_image,
        user=user,
        requirements=requirements,
        shared=shared,
        notebook=notebook,
        start_script=START_SCRIPT,
        workdir=WORKDIR,
        port=PORT,
        command=start_command(notebook_path),
    )
