"""URL.md: the list of published notebooks, rendered with jinja2 from the deploy records."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from gateway import remotes
from gateway.models import NotebookOutcome, NotebookState
from gateway.templating import render

# Characters that mean something in a Markdown table cell or inline text.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&!#{}()])")


def escape_markdown(text: str) -> str:
    """Make `text` literal inside one Markdown table cell: no markup, no line breaks."""
    flat = " ".join(text.split())
    return _MARKDOWN.sub(r"\\\1", flat)


def _commit_link(commit_url: str | None) -> Callable[[str], str]:
    def link(sha: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
            return "-"
        short = f"`{sha[:8]}`"
        return f"[{short}]({commit_url}{sha})" if commit_url else short

    return link


def render_url_md(records: Iterable[NotebookOutcome], repo_url: str) -> str:
    by_project: dict[str, list[NotebookOutcome]] = {}
    for record in records:
        if record.state is not NotebookState.REMOVED:
            by_project.setdefault(record.project, []).append(record)
    projects = [
        (name, sorted(notebooks, key=lambda n: n.path))
        for name, notebooks in sorted(by_project.items())
    ]
    return render(
        "URL.md.j2",
        projects=projects,
        md=escape_markdown,
        commit_link=_commit_link(remotes.commit_web_url(repo_url)),
    )
