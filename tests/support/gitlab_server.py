"""A small GitLab for tests, written from GitLab's documentation rather than from what the
gateway needs, and as strict as GitLab where the gateway could get it wrong:

- users and their tokens, with scopes (doc/user/profile/personal_access_tokens.md#personal-
  access-token-scopes): the REST API needs `api` or `read_api` (and `read_user` is enough for
  `GET /user`); git needs `read_repository`/`write_repository` (or `api`). A token without the
  scope gets 403 `insufficient_scope` (doc/api/rest/authentication.md);
- instance administrators, who see every project without being members (doc/api/users.md:
  `is_admin` is shown to the user only when they are one);
- membership through the project, its group and the group's ancestors, and through groups the
  project is shared with (invited), capped at the share's access level; `permissions` in
  `GET /projects/:id` reports only the direct and the own-group access, as GitLab does, while
  `GET /projects/:id/members/all/:user_id` includes inherited and invited members
  (doc/api/members.md, doc/user/project/members/sharing_projects_groups.md);
- private projects answer 404 to those who may not see them;
- protected branches with GitLab's default protection, "Maintainers" allowed to push
  (doc/user/project/repository/branches/protected.md): anyone less is refused by a pre-receive
  hook with GitLab's own message (lib/gitlab/checks/branch_check.rb);
- renamed and transferred projects, whose old path keeps working for the API and for git
  (doc/user/project/working_with_projects.md#rename-a-repository; lookups follow redirects,
  lib/api/helpers.rb `find_project`), and paths found whatever their case;
- rate limiting: 429 with `Retry-After` and `RateLimit-*` headers, body "Retry later"
  (doc/security/rate_limits.md, doc/administration/settings/user_and_ip_rate_limits.md);
- an optional sub-path, as a GitLab installed under a relative URL root
  (doc/install/relative_url.md);
- push events and their deliveries, shaped as doc/user/project/integrations/webhook_events.md
  shows them and sent with the headers doc/user/project/integrations/webhooks.md lists
  (see `push_event` and `hook_headers`): the newest 20 commits, `total_commits_count`.

The gateway talks to it through python-gitlab, the real client, and through git itself."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.support.git_http import serve_git
from tests.support.gitrepo import GitRemote, git

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
NO_ONE = 0  # a protected branch nobody may push to
_ids = itertools.count(100)

API_SCOPES = {"api", "read_api"}
# lib/gitlab/checks/branch_check.rb
PROTECTED_BRANCH_REFUSED = "You are not allowed to push code to protected branches on this project."
GITLAB_VERSION = "18.6.0"


@dataclass(eq=False)
class User:
    id: int
    username: str
    token: str
    admin: bool = False
    scopes: tuple[str, ...] = ("api", "read_user", "read_repository", "write_repository")

    def json(self, base: str) -> dict[str, Any]:
        found = {
            "id": self.id,
            "username": self.username,
            "name": self.username.title(),
            "state": "active",
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base}/{self.username}",
            "email": f"{self.username}@example.org",
        }
        if self.admin:
            found["is_admin"] = True
        return found


@dataclass(eq=False)
class Group:
    id: int
    full_path: str
    parent: Group | None = None
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level

    def access(self, user: User) -> int:
        """The user's level here, directly or through an ancestor group."""
        own = self.members.get(user.id, NO_ONE)
        return max(own, self.parent.access(user) if self.parent else NO_ONE)


@dataclass(eq=False)
class Project:
    id: int
    group: Group
    path: str
    remote: GitRemote
    members: dict[int, int] = field(default_factory=dict)  # direct members
    shared_with: dict[int, tuple[Group, int]] = field(default_factory=dict)  # invited groups
    protected: dict[str, int] = field(default_factory=lambda: {"main": MAINTAINER})
    former_paths: list[str] = field(default_factory=list)
    default_branch: str = "main"

    @property
    def full_path(self) -> str:
        return f"{self.group.full_path}/{self.path}"

    def access(self, user: User) -> int:
        """members/all: direct, inherited from the group chain, invited through a share."""
        levels = [self.members.get(user.id, NO_ONE), self.group.access(user)]
        levels += [min(group.access(user), cap) for group, cap in self.shared_with.values()]
        return max(levels)

    def json(self, base: str, user: User) -> dict[str, Any]:
        direct = self.members.get(user.id)
        group = self.group.access(user)
        host = base.split("//", 1)[1].split("/")[0].split(":")[0]
        return {
            "id": self.id,
            "description": "",
            "name": self.path,
            "name_with_namespace": f"{self.group.full_path} / {self.path}",
            "path": self.path,
            "path_with_namespace": self.full_path,
            "created_at": "2026-01-01T00:00:00.000Z",
            "default_branch": self.default_branch,
            "ssh_url_to_repo": f"git@{host}:{self.full_path}.git",
            "http_url_to_repo": f"{base}/{self.full_path}.git",
            "web_url": f"{base}/{self.full_path}",
            "visibility": "private",
            "namespace": {
                "id": self.group.id,
                "name": self.group.full_path.rsplit("/", 1)[-1],
                "path": self.group.full_path.rsplit("/", 1)[-1],
                "kind": "group",
                "full_path": self.group.full_path,
            },
            # As GitLab fills them: the project's own members and its group's, no invitations.
            "permissions": {
                "project_access": {"access_level": direct, "notification_level": 3}
                if direct
                else None,
                "group_access": {"access_level": group, "notification_level": 3} if group else None,
            },
        }


class GitLab:
    def __init__(self, root: Path, prefix: str = "") -> None:
        self.root = root
        self.prefix = prefix.rstrip("/")  # a GitLab under a relative URL root
        self.users: dict[str, User] = {}
        self.groups: dict[str, Group] = {}
        self.projects: dict[str, Project] = {}
        self.requests: list[str] = []
        self.seen_passwords: list[str] = []
        self.limited_until = 0.0  # rate limiting answers 429 until then

    # -- the world --------------------------------------------------------------------------

    def user(
        self, username: str, token: str, *, admin: bool = False, scopes: tuple[str, ...] = ()
    ) -> User:
        user = User(next(_ids), username, token, admin)
        if scopes:
            user.scopes = scopes
        self.users[token] = user
        return user

    def group(self, full_path: str, members: dict[User, int] | None = None) -> Group:
        """A group (and its parents, as needed), with direct members."""
        found = self.groups.get(full_path.lower())
        if found is None:
            parent_path, _, _ = full_path.rpartition("/")
            parent = self.group(parent_path) if parent_path else None
            found = Group(next(_ids), full_path, parent)
            self.groups[full_path.lower()] = found
        for user, level in (members or {}).items():
            found.members[user.id] = level
        return found

    def project(self, full_path: str, members: dict[User, int]) -> Project:
        """A private project whose repository lives at <root>/<full_path>.git, with its
        default branch protected as GitLab protects it."""
        group_path, path = full_path.rsplit("/", 1)
        group = self.group(group_path)
        folder = self.root / group_path
        folder.mkdir(parents=True, exist_ok=True)
        remote = GitRemote(folder, name=f"{path}.git")
        project = Project(next(_ids), group, path, remote, {u.id: lv for u, lv in members.items()})
        self._install_branch_check(project)
        self.projects[full_path.lower()] = project
        return project

    def share(self, project: Project, group: Group, level: int) -> None:
        """Invite a group to the project, its members at most at `level`."""
        project.shared_with[group.id] = (group, level)

    def rename(self, project: Project, new_full_path: str) -> None:
        """Rename or transfer: the old path keeps working (a redirect), as in GitLab."""
        old = project.full_path
        group_path, path = new_full_path.rsplit("/", 1)
        project.former_paths.append(old)
        project.group, project.path = self.group(group_path), path
        self.projects[new_full_path.lower()] = project
        new_dir = self.root / f"{new_full_path}.git"
        new_dir.parent.mkdir(parents=True, exist_ok=True)
        project.remote.move(new_dir)

    def limit(self, seconds: float) -> None:
        """Answer every API request with 429 for `seconds`."""
        self.limited_until = time.monotonic() + seconds

    # -- webhooks ---------------------------------------------------------------------------

    def push_event(
        self, project: Project, before: str, after: str, *, ref: str = "", user: User | None = None
    ) -> dict[str, Any]:
        """What GitLab delivers for a push (lib/gitlab/data_builder/push.rb): the newest 20
        commits of before..after, oldest first, and how many there were in all."""
        ref = ref or f"refs/heads/{project.default_branch}"
        zero = set(after) == {"0"}
        shas = [] if zero else project.remote.revs(before, after)
        commits = [self._commit_attrs(project, sha) for sha in shas[-20:]]
        base = self.base_url
        pusher = user or next(iter(self.users.values()))
        kind = "tag_push" if ref.startswith("refs/tags/") else "push"
        attrs = self._hook_attrs(project)
        return {
            "object_kind": kind,
            "event_name": kind,
            "before": before,
            "after": after,
            "ref": ref,
            "ref_protected": ref.removeprefix("refs/heads/") in project.protected,
            "checkout_sha": None if zero else after,
            "message": None,
            "user_id": pusher.id,
            "user_name": pusher.username.title(),
            "user_username": pusher.username,
            "user_email": "",
            "user_avatar": f"{base}/uploads/-/system/user/avatar/{pusher.id}/avatar.png",
            "project_id": project.id,
            "project": attrs,
            "commits": commits,
            "total_commits_count": len(shas),
            "push_options": {},
            "repository": {
                k: attrs[k]
                for k in (
                    "name", "url", "description", "homepage", "git_http_url", "git_ssh_url",
                    "visibility_level",
                )
            },
        }  # fmt: skip

    def hook_headers(self, secret: str, event: str = "Push Hook") -> dict[str, str]:
        """The headers of one delivery (doc/user/project/integrations/webhooks.md). A retry of
        the same delivery keeps its Idempotency-Key."""
        return {
            "Content-Type": "application/json",
            "User-Agent": f"GitLab/{GITLAB_VERSION}",
            "Idempotency-Key": str(uuid.uuid4()),
            "X-Gitlab-Event": event,
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Instance": self.instance_url,
            "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "X-Gitlab-Token": secret,
        }

    @property
    def base_url(self) -> str:
        return f"{self.instance_url}{self.prefix}"

    instance_url = "http://gitlab.test"  # until the server knows its address

    def _hook_attrs(self, project: Project) -> dict[str, Any]:
        base, host = self.base_url, self.instance_url.split("//", 1)[1].split(":")[0]
        ssh = f"git@{host}:{project.full_path}.git"
        http = f"{base}/{project.full_path}.git"
        return {
            "id": project.id,
            "name": project.path,
            "description": "",
            "web_url": f"{base}/{project.full_path}",
            "avatar_url": None,
            "git_ssh_url": ssh,
            "git_http_url": http,
            "namespace": project.group.full_path.rsplit("/", 1)[-1],
            "visibility_level": 0,
            "path_with_namespace": project.full_path,
            "default_branch": project.default_branch,
            "ci_config_path": None,
            "homepage": f"{base}/{project.full_path}",
            "url": ssh,
            "ssh_url": ssh,
            "http_url": http,
        }

    def _commit_attrs(self, project: Project, sha: str) -> dict[str, Any]:
        full, title, message, name, email, date = project.remote.show(
            sha, "%H%x00%s%x00%B%x00%an%x00%ae%x00%cI"
        ).split("\0")
        changed = project.remote.changes(sha)
        return {
            "id": full,
            "message": message.strip() + "\n",
            "title": title,
            "timestamp": date,
            "url": f"{self.base_url}/{project.full_path}/-/commit/{full}",
            "author": {"name": name, "email": email},
            "added": changed.get("A", []),
            "modified": changed.get("M", []),
            "removed": changed.get("D", []),
        }

    # -- the server -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", f"{self.prefix}/api/v4/{{tail:.*}}", self._api)
        app.router.add_route("*", f"{self.prefix}/{{path:.+\\.git/.*}}", self._git)
        return app

    # -- REST -------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        self.instance_url = f"{request.scheme}://{request.host}"
        path = request.rel_url.raw_path.removeprefix(self.prefix)
        self.requests.append(f"{request.method} {path}")
        if time.monotonic() < self.limited_until:
            return _rate_limited(self.limited_until - time.monotonic())
        user = self._authenticated(request)
        if user is None:
            return _error(401, "401 Unauthorized")
        parts = path.split("/")[3:]  # after /api/v4
        if parts == ["user"]:
            if not ({"read_user", *API_SCOPES} & set(user.scopes)):
                return _insufficient_scope("api read_api read_user")
            return web.json_response(user.json(self.base_url))
        if not (API_SCOPES & set(user.scopes)):
            return _insufficient_scope("api read_api")
        if len(parts) >= 2 and parts[0] == "projects":
            project = self._find(unquote(parts[1]))
            if project is None or not (user.admin or project.access(user) >= GUEST):
                return _error(404, "404 Project Not Found")
            if len(parts) == 2:
                return web.json_response(project.json(self.base_url, user))
            if parts[2:4] == ["repository", "commits"] and len(parts) == 5:
                return self._commit(project, unquote(parts[4]))
            if parts[2:4] == ["repository", "branches"] and len(parts) == 5:
                return self._branch(project, unquote(parts[4]))
            if parts[2:] == ["repository", "merge_base"]:
                return self._merge_base(project, request.query.getall("refs[]", []))
            if parts[2:4] == ["members", "all"] and len(parts) == 5 and parts[4].isdigit():
                return self._member(project, int(parts[4]))
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

    def _branch(self, project: Project, name: str) -> web.Response:
        """doc/api/branches.md, "Get single repository branch": 404 "Branch Not Found"."""
        try:
            sha = project.remote.show(f"refs/heads/{name}", "%H")
        except RuntimeError:
            return _error(404, "404 Branch Not Found")
        return web.json_response(
            {
                "name": name, "merged": False, "protected": name in project.protected,
                "default": name == project.default_branch, "developers_can_push": False,
                "developers_can_merge": False, "can_push": True,
                "web_url": f"{self.base_url}/{project.full_path}/-/tree/{name}",
                "commit": {"id": sha, "short_id": sha[:8]},
            }
        )  # fmt: skip

    def _merge_base(self, project: Project, refs: list[str]) -> web.Response:
        """doc/api/repositories.md, "Merge base" (lib/api/repositories.rb): at least two
        refs, each a commit id, branch or tag; an unknown one is a 400 naming it, refs
        without a common ancestor a 404."""
        if len(refs) < 2:
            return _error(400, "Provide at least 2 refs")
        shas, unknown = [], []
        for ref in refs:
            try:
                shas.append(project.remote.show(ref, "%H"))
            except RuntimeError:
                unknown.append(ref)
        if unknown:
            noun = "ref" if len(unknown) == 1 else "refs"
            return _error(400, f"Could not find {noun}: {', '.join(unknown)}")
        try:
            base = git("--git-dir", str(project.remote.bare), "merge-base", *shas)
        except RuntimeError:
            return _error(404, "404 Merge Base Not Found")
        return self._commit(project, base)

    def _member(self, project: Project, user_id: int) -> web.Response:
        member = next((u for u in self.users.values() if u.id == user_id), None)
        level = project.access(member) if member else NO_ONE
        if member is None or level == NO_ONE:
            return _error(404, "404 Not found")
        return web.json_response(
            {**member.json(self.base_url), "access_level": level, "expires_at": None,
             "membership_state": "active"}
        )  # fmt: skip

    def _authenticated(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization", "")
        token = (
            header[7:] if header.startswith("Bearer ") else request.headers.get("PRIVATE-TOKEN", "")
        )
        return self.users.get(token)

    def _find(self, key: str) -> Project | None:
        """By id, or by path whatever its case, the old path of a renamed project included."""
        if key.isdigit():
            return next((p for p in self.projects.values() if p.id == int(key)), None)
        return self.projects.get(key.lower())

    # -- git --------------------------------------------------------------------------------

    async def _git(self, request: web.Request) -> web.StreamResponse:
        self.instance_url = f"{request.scheme}://{request.host}"

        def authorize(repository: str, password: str, pushing: bool) -> tuple[str, int] | None:
            """The repository's real path and the pusher's level, or None (401)."""
            project = self._find(repository.removesuffix(".git"))
            user = self.users.get(password)
            if project is None or user is None:
                return None
            wanted = {"write_repository", "api"} if pushing else {"read_repository", "api"}
            if not wanted & set(user.scopes):
                return None
            level = MAINTAINER if user.admin else project.access(user)
            if level < (DEVELOPER if pushing else REPORTER):
                return None
            return f"{project.full_path}.git", level

        return await serve_git(
            request, self.root, authorize, self.seen_passwords, prefix=self.prefix
        )

    def _install_branch_check(self, project: Project) -> None:
        """GitLab's pre-receive check of protected branches: the levels allowed to push to
        each live in the repository (`gitlab-protected-branches`), the pusher's level comes
        from the HTTP request (GL_ACCESS_LEVEL)."""
        hook = project.remote.bare / "hooks" / "pre-receive"
        hook.write_text(
            "#!/bin/sh\n"
            "# Pushes straight into the repository on disk are the test's own authoring.\n"
            '[ -z "$GL_ACCESS_LEVEL" ] && exit 0\n'
            "while read old new ref; do\n"
            "  branch=${ref#refs/heads/}\n"
            '  [ "$branch" = "$ref" ] && continue\n'
            "  allowed=$(awk -v b=\"$branch\" '$1 == b { print $2 }' "
            '"$GIT_DIR/gitlab-protected-branches")\n'
            '  if [ -n "$allowed" ] && [ "${GL_ACCESS_LEVEL:-0}" -lt "$allowed" ]; then\n'
            f'    echo "GitLab: {PROTECTED_BRANCH_REFUSED}" >&2\n'
            "    exit 1\n"
            "  fi\n"
            "done\n"
        )
        hook.chmod(0o755)
        self.protect(project)

    def protect(
        self, project: Project, branch: str | None = None, level: int | None = None
    ) -> None:
        """Set who may push to a protected branch (GitLab's default: Maintainers)."""
        if branch is not None:
            project.protected[branch] = MAINTAINER if level is None else level
        lines = "".join(f"{b} {lv}\n" for b, lv in project.protected.items())
        (project.remote.bare / "gitlab-protected-branches").write_text(lines)


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"message": message}), content_type="application/json"
    )


def _insufficient_scope(scope: str) -> web.Response:
    """doc/api/rest/authentication.md: a token without the scope an endpoint needs."""
    body = {
        "error": "insufficient_scope",
        "error_description": (
            "The request requires higher privileges than provided by the access token."
        ),
        "scope": scope,
    }
    challenge = (
        'Bearer realm="Protected by OAuth 2", error="insufficient_scope", '
        f'error_description="The request requires higher privileges than provided by the '
        f'access token.", scope="{scope}"'
    )
    return web.json_response(body, status=403, headers={"WWW-Authenticate": challenge})


def _rate_limited(retry_after: float) -> web.Response:
    """doc/security/rate_limits.md: 429, "Retry later", Retry-After and RateLimit-* headers."""
    seconds = max(1, int(retry_after + 0.999))
    headers = {
        "Retry-After": str(seconds),
        "RateLimit-Name": "throttle_authenticated_api",
        "RateLimit-Limit": "60",
        "RateLimit-Observed": "61",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(int(time.time()) + seconds),
    }
    return web.Response(status=429, text="Retry later\n", headers=headers)
