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


def render_env_dockerfile(*, base_image: str, user: str, requirements: bool) -> str:
    """The environment: base image, requirements, our start script. base_image and user are
    validated settings (or an allowed image)."""
    template = _environment().get_template("env.Dockerfile.j2")
    return template.render(
        base_image=base_image,
        user=user,
        requirements=requirements,
        start_script=START_SCRIPT,
        workdir=WORKDIR,
        port=PORT,
        command=start_command(""),
    )


def render_dockerfile(
    *, env_image: str, user: str, notebook_path: str, shared: bool, notebook: bool = True
) -> str:
    """Files on top of an environment image: the shared files, and one notebook (which the
    image then opens). notebook_path is arbitrary and therefore only ever rendered as a JSON
    string. Without `notebook`, a user server's whole repository is in shared/."""
    template = _environment().get_template("Dockerfile.j2")
    return template.render(
        env_image=env_image,
        user=user,
        shared=shared,
        notebook=notebook,
        workdir=WORKDIR,
        command=start_command(notebook_path),
    )
