"""URL.md: the list of published notebooks, rendered with jinja2 from the deploy records."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from urllib.parse import urlsplit

import jinja2

from gateway.models import NotebookOutcome, NotebookState

# Characters that mean something in a Markdown table cell or inline text.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&!#{}()])")


def escape_markdown(text: str) -> str:
    """Make `text` literal inside one Markdown table cell: no markup, no line breaks."""
    flat = " ".join(text.split())
    return _MARKDOWN.sub(r"\\\1", flat)


def commit_web_url(repo_url: str) -> str | None:
    """The web page prefix for commits of a GitLab repository, when the URL tells it."""
    match = re.fullmatch(r"(?:ssh://)?[\w.-]+@([\w.-]+)[:/](.+?)(?:\.git)?/?", repo_url)
    if match and not repo_url.startswith(("http://", "https://")):
        return f"https://{match.group(1)}/{match.group(2)}/-/commit/"
    parts = urlsplit(repo_url)
    if parts.scheme in ("http", "https") and parts.hostname:
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        path = parts.path.rstrip("/").removesuffix(".git")
        return f"{parts.scheme}://{netloc}{path}/-/commit/"
    return None


@cache
def _environment(commit_url: str | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["md"] = escape_markdown

    def commit_link(sha: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
            return "-"
        short = f"`{sha[:8]}`"
        return f"[{short}]({commit_url}{sha})" if commit_url else short

    env.filters["commit_link"] = commit_link
    return env


def render_url_md(records: Iterable[NotebookOutcome], repo_url: str) -> str:
    by_project: dict[str, list[NotebookOutcome]] = {}
    for record in records:
        if record.state is not NotebookState.REMOVED:
            by_project.setdefault(record.project, []).append(record)
    projects = [
        (name, sorted(notebooks, key=lambda n: n.path))
        for name, notebooks in sorted(by_project.items())
    ]
    template = _environment(commit_web_url(repo_url)).get_template("URL.md.j2")
    return template.render(projects=projects)
