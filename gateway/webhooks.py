"""What a GitLab webhook delivery means: a push to publish, or the reason it is ignored.

GitLab permanently disables hooks that keep answering 4xx, so everything that is merely not for
us is ignored with a reason (200); only a payload that is not GitLab's gets a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import BadRequest

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256 repositories


@dataclass(frozen=True)
class Push:
    branch: str
    before: str
    after: str
    repository: str  # GitLab's path_with_namespace, for the job's record
    idempotency_key: str | None

    @property
    def dedupe_key(self) -> str:
        """The same push delivered twice (retries, a project and a group hook) runs once."""
        return f"push:{self.branch}:{self.after}"

    def params(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "before": self.before,
            "after": self.after,
            "repository": self.repository,
        }


@dataclass(frozen=True)
class Ignored:
    reason: str


def classify(
    headers: Mapping[str, str],
    body: object,
    *,
    branch: str,
    repository: str | None,
    bot_email: str,
) -> Push | Ignored:
    """`branch`: the branch notebooks are published from ("" = the project's default branch).
    `repository`: our repository's path on GitLab, when the remote URL tells it."""
    if not isinstance(body, dict):
        raise BadRequest("the webhook payload must be a JSON object")
    kind = body.get("object_kind") or body.get("event_name") or headers.get("X-Gitlab-Event", "")
    if kind == "tag_push":
        return Ignored("tag pushes do not publish notebooks")
    if kind != "push":
        return Ignored(f"only push events publish notebooks, not {kind or 'this event'!r}")
    ref, before, after = body.get("ref"), body.get("before"), body.get("after")
    if not (isinstance(ref, str) and _is_sha(before) and _is_sha(after)):
        raise BadRequest("a push event needs 'ref', 'before' and 'after' as GitLab sends them")
    assert isinstance(before, str) and isinstance(after, str)
    project = body["project"] if isinstance(body.get("project"), dict) else {}
    if not ref.startswith("refs/heads/"):
        return Ignored(f"{ref} is not a branch")
    pushed = ref.removeprefix("refs/heads/")
    wanted = branch or str(project.get("default_branch") or "")
    if wanted and pushed != wanted:
        return Ignored(f"push to branch {pushed!r}; notebooks are published from {wanted!r}")
    path = str(project.get("path_with_namespace") or "")
    if repository and path and path.lower() != repository.lower():
        return Ignored(f"push to {path}, not to the notebooks repository {repository}")
    if set(after) == {"0"}:
        return Ignored("the branch was deleted; its notebooks stay until DELETE /projects")
    commits = [c for c in body.get("commits") or [] if isinstance(c, dict)]
    total = body.get("total_commits_count", len(commits))
    if commits and total == len(commits) and all(_author_email(c) == bot_email for c in commits):
        return Ignored("only the gateway's own URL.md commits")
    key = headers.get("Idempotency-Key") or headers.get("X-Gitlab-Event-UUID") or None
    return Push(pushed, before, after, path, key)


def repository_path(repo_url: str) -> str | None:
    """group/project for GitLab remotes (https://, ssh://, git@host:), None for local ones."""
    scp = re.fullmatch(r"[\w.-]+@[\w.-]+:(?!//)(.+)", repo_url)
    if scp:
        path = scp.group(1)
    elif urlsplit(repo_url).scheme in ("http", "https", "ssh", "git"):
        path = urlsplit(repo_url).path
    else:
        return None
    return path.strip("/").removesuffix(".git") or None


def _is_sha(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA.fullmatch(value))


def _author_email(commit: dict[str, Any]) -> str:
    author = commit.get("author")
    return str(author.get("email", "")) if isinstance(author, dict) else ""
