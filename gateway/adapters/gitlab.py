"""The GitLab instance, through python-gitlab: who a token belongs to and what it may do.

python-gitlab blocks, so every call runs in a worker thread. Answers are cached briefly, keyed by
a hash of the token (never the token itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import gitlab
import requests

from gateway.errors import Unauthorized, UpstreamError

T = TypeVar("T")

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50


class GitLabError(UpstreamError):
    code = "gitlab_error"


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str


@dataclass(frozen=True)
class GitLabProject:
    id: int
    path_with_namespace: str
    default_branch: str
    http_url_to_repo: str
    access_level: int  # the token's best of project and group access (0: none)


class GitLabClient:
    def __init__(self, url: str, cache_ttl: float, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}

    async def user(self, token: str) -> GitLabUser:
        """The user a token belongs to; Unauthorized when GitLab does not know the token."""

        def fetch() -> GitLabUser:
            client = self._client(token)
            client.auth()
            me = client.user
            assert me is not None
            return GitLabUser(int(me.id), str(me.username), str(getattr(me, "name", me.username)))

        return await self._cached(("user", _digest(token)), fetch)

    async def project(self, token: str, path: str) -> GitLabProject | None:
        """The project as this token sees it, or None when it cannot see it (GitLab answers 404
        for projects a user may not know of)."""

        def fetch() -> GitLabProject | None:
            try:
                found = self._client(token).projects.get(path)
            except gitlab.exceptions.GitlabGetError as exc:
                if exc.response_code in (403, 404):
                    return None
                raise
            permissions = getattr(found, "permissions", None) or {}
            levels = [
                (permissions.get(kind) or {}).get("access_level") or 0
                for kind in ("project_access", "group_access")
            ]
            return GitLabProject(
                id=int(found.id),
                path_with_namespace=str(found.path_with_namespace),
                default_branch=str(getattr(found, "default_branch", None) or "main"),
                http_url_to_repo=str(found.http_url_to_repo),
                access_level=max(levels),
            )

        return await self._cached(("project", _digest(token), path), fetch)

    async def has_commit(self, token: str, project_id: int, sha: str) -> bool:
        def fetch() -> bool:
            try:
                self._client(token).projects.get(project_id, lazy=True).commits.get(sha)
            except gitlab.exceptions.GitlabGetError as exc:
                if exc.response_code == 404:
                    return False
                raise
            return True

        return await self._cached(("commit", _digest(token), str(project_id), sha), fetch)

    def _client(self, token: str) -> gitlab.Gitlab:
        # OAuth tokens and personal access tokens both work as a Bearer token.
        return gitlab.Gitlab(self.url, oauth_token=token, timeout=self.timeout)

    async def _cached(self, key: tuple[str, ...], fetch: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return cast(T, hit[1])
        try:
            value = await asyncio.to_thread(fetch)
        except gitlab.exceptions.GitlabAuthenticationError:
            raise Unauthorized("GitLab does not accept this token") from None
        except gitlab.exceptions.GitlabError as exc:
            raise GitLabError(f"GitLab answered {exc.response_code}: {exc.error_message}") from None
        except requests.RequestException as exc:
            raise GitLabError(
                f"GitLab at {self.url} does not answer: {type(exc).__name__}"
            ) from None
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self.cache_ttl, value)
        return value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
