"""GitLab webhook deliveries, shaped like the documented push and tag push events."""

from __future__ import annotations

import uuid
from typing import Any

ZERO = "0" * 40


def commit(sha: str, message: str, email: str = "author@example.org") -> dict[str, Any]:
    return {
        "id": sha,
        "message": message,
        "title": message.splitlines()[0] if message else "",
        "timestamp": "2026-11-23T12:00:00+00:00",
        "url": f"https://gitlab.example.org/team/notebooks/-/commit/{sha}",
        "author": {"name": "Someone", "email": email},
        "added": [],
        "modified": [],
        "removed": [],
    }


def push_event(
    before: str,
    after: str,
    *,
    branch: str = "main",
    commits: list[dict[str, Any]] | None = None,
    total: int | None = None,
    path: str = "team/notebooks",
    default_branch: str = "main",
    kind: str = "push",
) -> dict[str, Any]:
    commits = commits if commits is not None else [commit(after, "Change notebooks")]
    ref = f"refs/tags/{branch}" if kind == "tag_push" else f"refs/heads/{branch}"
    return {
        "object_kind": kind,
        "event_name": kind,
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": None if set(after) == {"0"} else after,
        "message": None,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "",
        "user_avatar": "https://gitlab.example.org/uploads/user/avatar/4/a.png",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": path.rsplit("/", 1)[-1],
            "description": "",
            "web_url": f"https://gitlab.example.org/{path}",
            "git_ssh_url": f"git@gitlab.example.org:{path}.git",
            "git_http_url": f"https://gitlab.example.org/{path}.git",
            "namespace": path.split("/")[0],
            "visibility_level": 0,
            "path_with_namespace": path,
            "default_branch": default_branch,
        },
        "commits": commits[:20],  # GitLab lists at most 20
        "total_commits_count": len(commits) if total is None else total,
        "repository": {
            "name": path.rsplit("/", 1)[-1],
            "url": f"git@gitlab.example.org:{path}.git",
            "homepage": f"https://gitlab.example.org/{path}",
        },
    }


def headers(
    secret: str, kind: str = "Push Hook", key: str | None = None, event: str | None = None
) -> dict[str, str]:
    """One delivery's headers. `key` is the delivery's (its retries keep it); `event` the
    event's, the same in every hook's delivery of it (X-Gitlab-Event-UUID)."""
    return {
        "X-Gitlab-Event": kind,
        "X-Gitlab-Token": secret,
        "X-Gitlab-Event-UUID": event or str(uuid.uuid4()),
        "Idempotency-Key": key or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }
