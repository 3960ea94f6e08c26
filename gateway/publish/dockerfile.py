"""The Dockerfile of a notebook image, rendered from a jinja2 template."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources

from gateway.templating import render

WORKDIR = "/home/jovyan/work"
COMMIT_DIR = "/opt/notebook-gateway/commit"  # a user server's repository (start-notebook.py)
PORT = 8888
REQUIREMENTS = "/tmp/notebook-gateway/requirements.txt"
# The one step of a build that runs code from the repository (setup scripts, build backends):
# it runs in a container with the build's limits, not inside the engine's builder.
INSTALL_COMMAND = ["python3", "-m", "pip", "install", "--no-cache-dir", "--requirement"]


@cache
def start_script() -> bytes:
    return resources.files("gateway").joinpath("templates/start-notebook.py").read_bytes()


def start_command(notebook_path: str, ui: str = "/lab") -> list[str]:
    """How every container starts Jupyter: the start script itself is the command, so a
    container always runs the gateway's current script, whichever image it runs (one built
    by an earlier version included)."""
    return ["python3", "-c", start_script().decode(), notebook_path, ui]


def install_command() -> list[str]:
    return [*INSTALL_COMMAND, REQUIREMENTS]


def render_env_dockerfile(
    *, base_image: str, user: str, requirements: bool, labels: Mapping[str, str]
) -> str:
    """The environment: base image and requirements (installed afterwards, by
    install_command, in a container of its own). base_image and user are validated
    settings (or an allowed image)."""
    return render(
        "env.Dockerfile.j2",
        label_line=label_instruction(labels),
        base_image=base_image,
        user=user,
        requirements=requirements,
        requirements_path=REQUIREMENTS,
        install=install_command(),
        workdir=WORKDIR,
        port=PORT,
    )


def render_dockerfile(
    *,
    env_image: str,
    user: str,
    shared: bool,
    labels: Mapping[str, str],
    notebook: bool = True,
) -> str:
    """Files on top of an environment image: the shared files, and one notebook. Without
    `notebook`, a user server's whole repository is in shared/."""
    return render(
        "Dockerfile.j2",
        label_line=label_instruction(labels),
        env_image=env_image,
        user=user,
        shared=shared,
        notebook=notebook,
        workdir=WORKDIR,
        commit_dir=COMMIT_DIR,
    )


def label_instruction(labels: Mapping[str, str]) -> str:
    """One LABEL instruction for all the labels a Dockerfile can hold exactly: the classic
    builder makes a step (a container and a commit) of every label given to it through the
    API, and one of every instruction. Empty if there are none."""
    pairs = [
        f"{_quoted(key)}={_quoted(value)}"
        for key, value in sorted(labels.items())
        if _quotable(key) and _quotable(value)
    ]
    return f"LABEL {' '.join(pairs)}" if pairs else ""


def api_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels a Dockerfile cannot hold (a line break or another control character in
    them), which the build gets through the API instead."""
    return {k: v for k, v in labels.items() if not (_quotable(k) and _quotable(v))}


def _quotable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def _quoted(text: str) -> str:
    """A double-quoted Dockerfile word: a backslash keeps ", $ and itself literal there."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'
