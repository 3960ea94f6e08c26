"""What renku's own clients do with a server object, line for line, so a test fails where they
would. Each function cites the code it follows (github.com/SwissDataScienceCenter).

- renku-python v2.9.4, renku/core/session/renkulab.py: `session_list`, `find_image`,
  `session_start`'s payload; the notebooks API at `urljoin(renku_url, "api/notebooks")`.
- renku-ui 2.10.1, client/src/notebooks/Notebooks.state.js (`ExpectedAnnotations`,
  `NotebooksHelper.cleanAnnotations`) and Notebooks.present.js (a session row: `resources
  ?.requests`, `formattedResourceList`, `annotations["commit-sha"].substring(0, 8)`, links
  from `repository`).
- renku-ui 3.59.1, client/src/features/session/sessions.api.ts (`getDockerImage`,
  `startSession`'s body) and sessions.types.ts (`Session`, `SessionStatus`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Notebooks.state.js, ExpectedAnnotations["renku.io"]
EXPECTED = {
    "branch": "unknown",
    "commit-sha": "00000000",
    "default_image_used": False,
    "namespace": "unknown",
    "gitlabProjectId": 0,
    "projectName": "unknown",
    "repository": "https://none",
}


def clean_annotations(annotations: dict[str, Any]) -> dict[str, Any]:
    """NotebooksHelper.cleanAnnotations: the expected ones, a default for each one missing
    (which is how a session ends up linked to /projects/unknown/unknown)."""
    cleaned: dict[str, Any] = {}
    for name, default in EXPECTED.items():
        value = annotations.get(f"renku.io/{name}")
        if value is None:
            cleaned[name] = default
        elif name == "default_image_used":
            cleaned[name] = isinstance(value, str) and value.lower() == "true"
        else:
            cleaned[name] = value
    return cleaned


@dataclass
class SessionRow:
    """What renku-ui 2.10 renders for one session (Notebooks.present.js, NotebookServerRow)."""

    project: str
    branch_link: str
    commit_link: str
    commit_title: str
    resources: str


def session_row(server: dict[str, Any]) -> SessionRow:
    """Raises where the browser's script throws: `Object.keys(undefined)` for a server
    without resources.requests, `.substring` of a missing commit."""
    annotations = clean_annotations(server["annotations"])
    requests = (server.get("resources") or {}).get("requests")
    if not isinstance(requests, dict):
        raise TypeError("Cannot convert undefined or null to object (formattedResourceList)")
    commit = annotations["commit-sha"]
    if not isinstance(commit, str):
        raise TypeError("annotations['commit-sha'].substring is not a function")
    return SessionRow(
        project=f"{annotations['namespace']}/{annotations['projectName']}",
        branch_link=f"{annotations['repository']}/tree/{annotations['branch']}",
        commit_link=f"{annotations['repository']}/tree/{commit}",
        commit_title=commit[:8],
        resources=" | ".join(f"{value} {name}" for name, value in requests.items()),
    )


@dataclass
class Session:
    """renku-python's Session, as session_list builds it."""

    id: str
    status: str
    start_time: datetime
    commit: str | None
    branch: str | None


def session_list(answer: dict[str, Any]) -> list[Session]:
    """RenkulabSessionProvider.session_list, from the body of GET /servers. `fromisoformat`
    of a null or empty `started` raises, and the CLI with it."""
    return [
        Session(
            id=session["name"],
            status=session.get("status", {}).get("state", "unknown"),
            start_time=datetime.fromisoformat(session.get("started")),
            commit=session.get("annotations", {}).get("renku.io/commit-sha"),
            branch=session.get("annotations", {}).get("renku.io/branch"),
        )
        for session in answer.get("servers", {}).values()
    ]


def session_start_payload(
    image: str, namespace: str, project: str, commit: str, branch: str
) -> dict[str, Any]:
    """RenkulabSessionProvider.session_start's body, options as `renku session start
    --cpu 0.5 --memory 1G` gives them; no cloud storage configured."""
    return {
        "image": image,
        "commit_sha": commit,
        "serverOptions": {"cpu_request": 0.5, "mem_request": "1G"},
        "branch": branch,
        "cloudstorage": [],
        "namespace": namespace,
        "project": project,
    }


def start_session_body(namespace: str, project: str, commit: str, branch: str) -> dict[str, Any]:
    """renku-ui 3.x startSession's body as the launch page sends it: default class, no
    storage mounts, no secrets."""
    return {
        "branch": branch,
        "commit_sha": commit,
        "default_url": "/lab",
        "environment_variables": {},
        "lfs_auto_fetch": False,
        "namespace": namespace,
        "project": project,
        "resource_class_id": 1,
        "storage": 1,
    }


def docker_image_available(status: int) -> bool:
    """renku-ui's getDockerImage and renku-python's find_image: only the status counts,
    200 available, 404 not; anything else is an error (renku-ui's validateStatus)."""
    if status == 200:
        return True
    if status == 404:
        return False
    raise AssertionError(f"GET /images answered {status}: neither 200 nor 404")
