"""A small GitLab for tests: the REST endpoints the gateway uses, in GitLab's JSON shapes, and
the projects' repositories over git smart HTTP with token checks. The gateway talks to it
through python-gitlab, the real client."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.support.git_http import serve_git
from tests.support.gitrepo import GitRemote

GUEST, REPORTER, DEVELOPER, MAINTAINER = 10, 20, 30, 40
_ids = itertools.count(100)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    token: str

    def json(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.username.title(),
            "state": "active",
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base}/{self.username}",
            "email": f"{self.username}@example.org",
        }


@dataclass
class Project:
    id: int
    namespace: str
    path: str
    remote: GitRemote
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level

    @property
    def full_path(self) -> str:
        return f"{self.namespace}/{self.path}"

    def json(self, base: str, user: User) -> dict[str, Any]:
        level = self.members.get(user.id)
        return {
            "id": self.id,
            "description": "",
            "name": self.path,
            "name_with_namespace": f"{self.namespace} / {self.path}",
            "path": self.path,
            "path_with_namespace": self.full_path,
            "created_at": "2026-01-01T00:00:00.000Z",
            "default_branch": "main",
            "ssh_url_to_repo": f"git@{base.split('//')[1].split(':')[0]}:{self.full_path}.git",
            "http_url_to_repo": f"{base}/{self.full_path}.git",
            "web_url": f"{base}/{self.full_path}",
            "visibility": "private",
            "namespace": {
                "id": 1,
                "name": self.namespace,
                "path": self.namespace,
                "kind": "group",
                "full_path": self.namespace,
            },
            "permissions": {
                "project_access": {"access_level": level, "notification_level": 3}
                if level
                else None,
                "group_access": None,
            },
        }


class GitLab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.users: dict[str, User] = {}
        self.projects: dict[str, Project] = {}
        self.requests: list[str] = []
        self.seen_passwords: list[str] = []

    def user(self, username: str, token: str) -> User:
        user = User(next(_ids), username, token)
        self.users[token] = user
        return user

    def project(self, full_path: str, members: dict[User, int]) -> Project:
        """A private project whose repository lives at <root>/<full_path>.git."""
        namespace, path = full_path.rsplit("/", 1)
        folder = self.root / namespace
        folder.mkdir(parents=True, exist_ok=True)
        remote = GitRemote(folder, name=f"{path}.git")
        project = Project(
            next(_ids), namespace, path, remote, {u.id: level for u, level in members.items()}
        )
        self.projects[full_path] = project
        return project

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/api/v4/{tail:.*}", self._api)
        app.router.add_route("*", "/{path:.+\\.git/.*}", self._git)
        return app

    # -- REST -------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.rel_url.raw_path}")
        user = self._authenticated(request)
        if user is None:
            return _error(401, "401 Unauthorized")
        parts = request.rel_url.raw_path.split("/")[3:]  # after /api/v4
        base = f"{request.scheme}://{request.host}"
        if parts == ["user"]:
            return web.json_response(user.json(base))
        if len(parts) >= 2 and parts[0] == "projects":
            project = self._find(unquote(parts[1]))
            if project is None or (user.id not in project.members):
                return _error(404, "404 Project Not Found")
            if len(parts) == 2:
                return web.json_response(project.json(base, user))
            if parts[2:4] == ["repository", "commits"] and len(parts) == 5:
                return self._commit(project, parts[4])
        return _error(404, "404 Not Found")

    def _commit(self, project: Project, sha: str) -> web.Response:
        try:
            fields = project.remote.show(sha, "%H%x00%s%x00%an%x00%ae%x00%cI%x00%P")
        except RuntimeError:
            return _error(404, "404 Commit Not Found")
        full, title, name, email, date, parents = fields.split("\0")
        return web.json_response(
            {
                "id": full, "short_id": full[:8], "title": title, "message": title,
                "author_name": name, "author_email": email, "authored_date": date,
                "committer_name": name, "committer_email": email, "committed_date": date,
                "created_at": date, "parent_ids": parents.split(), "web_url": "",
            }
        )  # fmt: skip

    def _authenticated(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        token = (
            header[7:] if header.startswith("Bearer ") else request.headers.get("PRIVATE-TOKEN", "")
        )
        return self.users.get(token)

    def _find(self, key: str) -> Project | None:
        if key.isdigit():
            return next((p for p in self.projects.values() if p.id == int(key)), None)
        return self.projects.get(key)

    # -- git --------------------------------------------------------------------------------

    async def _git(self, request: web.Request) -> web.StreamResponse:
        def authorize(repository: str, password: str, pushing: bool) -> bool:
            project = self.projects.get(repository.removesuffix(".git"))
            user = self.users.get(password)
            if project is None or user is None:
                return False
            level = project.members.get(user.id, 0)
            return level >= (DEVELOPER if pushing else REPORTER)

        return await serve_git(request, self.root, authorize, self.seen_passwords)


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"message": message}), content_type="application/json"
    )
