"""GitLab's own example payloads (gitlab_payloads/, from GitLab's documentation), aimed at a
project of the stand-in GitLab: only the repository's identity and the commits change."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.support.gitlab_server import GitLab, Project

PAYLOADS = Path(__file__).parent / "gitlab_payloads"

# file -> the X-Gitlab-Event GitLab sends it with
EVENTS = {
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "merge_request": "Merge Request Hook",
    "pipeline": "Pipeline Hook",
    "system_push": "System Hook",
    "system_tag_push": "System Hook",
    "system_repository_update": "System Hook",
    "test_sample": "Push Hook",
}


def example(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return found


def aimed_at(
    name: str, lab: GitLab, project: Project, before: str, after: str, ref: str = ""
) -> dict[str, Any]:
    """The documented payload `name`, as if `project` had sent it for before..after on `ref`
    (its default branch by default). Every other field stays as documented."""
    body = copy.deepcopy(example(name))
    ours = lab.push_event(project, before, after, ref=ref or "refs/heads/main")
    identity = ours["project"]
    for key in ("project", "repository"):
        if isinstance(body.get(key), dict):
            body[key] = {k: identity.get(k, v) for k, v in body[key].items()}
            if key == "project" and "id" in body[key]:
                body[key]["id"] = project.id
    if "project_id" in body:
        body["project_id"] = project.id
    if "changes" in body and isinstance(body["changes"], list):  # repository_update
        body["changes"] = [{"before": before, "after": after, "ref": ours["ref"]}]
        body["refs"] = [ours["ref"]]
    elif "before" in body and body.get("object_kind", body.get("event_name")) in (
        "push",
        "tag_push",
    ):
        body["before"], body["after"] = before, after
        body["ref"] = ref or body["ref"].replace("master", "main")
        body["checkout_sha"] = None if set(after) == {"0"} else after
        body["commits"] = ours["commits"] if body.get("commits") else []
        body["total_commits_count"] = ours["total_commits_count"] if body["commits"] else 0
    return body
