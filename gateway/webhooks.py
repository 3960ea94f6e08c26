"""What a GitLab webhook delivery means: a push to publish, or the reason it is ignored.

GitLab permanently disables hooks that keep answering 4xx, so everything that is merely not for
us is ignored with a reason (200); only a payload that is not GitLab's gets a 400. The shapes
are GitLab's (doc/user/project/integrations/webhook_events.md for project and group hooks,
doc/administration/system_hooks.md for system hooks, whose pushes carry `event_name` only, and
whose `repository_update` lists the changed refs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway import remotes
from gateway.errors import BadRequest

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256 repositories
# Deliveries of one push without GitLab's event id (another sender, an old GitLab) are taken
# for the same push this long; later, the same change again (a rollback undone) runs again.
SAME_PUSH_WITHIN = 600.0


@dataclass(frozen=True)
class Repository:
    """How the notebooks repository appears in deliveries: GitLab's project id, when the
    gateway could ask GitLab, its clone URLs and its path. When none is known (a local
    remote), a push is taken for ours only if the repository has its commit."""

    project_id: int | None = None
    urls: frozenset[str] = frozenset()  # normalised by remotes.clone_key
    paths: frozenset[str] = frozenset()  # lowercase path_with_namespace

    def holds(self, project_id: object, project: Mapping[str, Any]) -> bool | None:
        """Whether a delivery is about this repository; None when nothing tells."""
        if self.project_id is not None and isinstance(project_id, int):
            return project_id == self.project_id
        urls = {
            remotes.clone_key(str(project[key]))
            for key in ("git_http_url", "git_ssh_url", "http_url", "ssh_url", "url")
            if project.get(key)
        }
        path = str(project.get("path_with_namespace") or "").lower()
        if urls & self.urls or (path and path in self.paths):
            return True
        if (self.urls or self.paths) and (urls or path):
            return False
        return None


@dataclass(frozen=True)
class Push:
    branch: str
    before: str
    after: str
    repository: str  # GitLab's path_with_namespace, for the job's record
    idempotency_key: str | None  # one delivery, retried
    event_id: str | None  # one event, whichever hooks deliver it (X-Gitlab-Event-UUID)
    verify: bool = False  # nothing told the repository: the clone must have the commit

    @property
    def dedupe_key(self) -> str:
        """The same push delivered twice (retries, a project and a group hook) runs once;
        a later push of the same change (a rollback undone) is another event."""
        if self.event_id:
            return f"push-event:{self.event_id}"
        return f"push:{self.branch}:{self.before}:{self.after}"

    @property
    def dedupe_within(self) -> float | None:
        return None if self.event_id else SAME_PUSH_WITHIN

    def params(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "branch": self.branch,
            "before": self.before,
            "after": self.after,
            "repository": self.repository,
        }
        if self.verify:
            found["verify"] = True
        return found


@dataclass(frozen=True)
class Ignored:
    reason: str


def classify(
    headers: Mapping[str, str],
    body: object,
    *,
    branch: str,
    repository: Repository,
    bot_email: str,
) -> Push | Ignored:
    """`branch`: the branch notebooks are published from ("" = the project's default branch).
    `repository`: how the notebooks repository is known."""
    if not isinstance(body, dict):
        raise BadRequest("the webhook payload must be a JSON object")
    kind = body.get("object_kind") or body.get("event_name") or headers.get("X-Gitlab-Event", "")
    project = body["project"] if isinstance(body.get("project"), dict) else {}
    if kind == "repository_update":  # a system hook's one event per push
        body = _branch_change(body, branch or str(project.get("default_branch") or ""))
        if body is None:
            return Ignored("the repository update changed no branch notebooks are published from")
        kind = "push"
    if kind == "tag_push":
        return Ignored("tag pushes do not publish notebooks")
    if kind != "push":
        return Ignored(f"only push events publish notebooks, not {kind or 'this event'!r}")
    ref, before, after = body.get("ref"), body.get("before"), body.get("after")
    if not (isinstance(ref, str) and _is_sha(before) and _is_sha(after)):
        raise BadRequest("a push event needs 'ref', 'before' and 'after' as GitLab sends them")
    assert isinstance(before, str) and isinstance(after, str)
    if not ref.startswith("refs/heads/"):
        return Ignored(f"{ref} is not a branch")
    pushed = ref.removeprefix("refs/heads/")
    wanted = branch or str(project.get("default_branch") or "")
    if wanted and pushed != wanted:
        return Ignored(f"push to branch {pushed!r}; notebooks are published from {wanted!r}")
    path = str(project.get("path_with_namespace") or "")
    ours = repository.holds(body.get("project_id", project.get("id")), project)
    if ours is False:
        return Ignored(f"push to {path or 'another repository'}, not to the notebooks repository")
    if set(after) == {"0"}:
        return Ignored("the branch was deleted; its notebooks stay until DELETE /projects")
    commits = [c for c in body.get("commits") or [] if isinstance(c, dict)]
    total = body.get("total_commits_count", len(commits))
    if commits and total == len(commits) and all(_author_email(c) == bot_email for c in commits):
        return Ignored("only the gateway's own URL.md commits")
    return Push(
        pushed,
        before,
        after,
        path,
        headers.get("Idempotency-Key") or None,
        headers.get("X-Gitlab-Event-UUID") or None,
        verify=ours is None,
    )


def _branch_change(body: dict[str, Any], wanted: str) -> dict[str, Any] | None:
    """A repository_update as the push of its change to the branch `wanted`."""
    for change in body.get("changes") or []:
        if isinstance(change, dict) and change.get("ref") == f"refs/heads/{wanted}":
            return {**body, **change, "commits": []}
    return None


def _is_sha(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA.fullmatch(value))


def _author_email(commit: dict[str, Any]) -> str:
    author = commit.get("author")
    return str(author.get("email", "")) if isinstance(author, dict) else ""
