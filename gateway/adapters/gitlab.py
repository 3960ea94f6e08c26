"""The GitLab instance, through python-gitlab: who a token belongs to and what it may do.

python-gitlab blocks, so every call runs in a worker thread of this adapter's own (a slow or
limiting GitLab never holds up git or Docker work). There is one client per token (its HTTP
connections reused), a deadline per request and a bounded retry of passing failures; a GitLab
that is limiting requests (429) is never waited for: the caller gets 503 with GitLab's
Retry-After. Answers are cached briefly, keyed by a hash of the token (never the token
itself).

Access follows GitLab's own rules: a user's level on a project is what
`GET /projects/:id/members/all/:user_id` says (direct, inherited from the group chain, or
through a group the project is shared with; doc/api/members.md), and an instance
administrator may do anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote

import gitlab
import requests

from gateway.errors import Forbidden, GatewayError, Unauthorized, Unavailable, UpstreamError

T = TypeVar("T")

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
CLIENTS = 256  # tokens whose client (and connections) are kept
TRANSIENT_RETRIES = 1  # a 5xx or a dropped connection is asked once more, then reported


class GitLabError(UpstreamError):
    code = "gitlab_error"


class GitLabLimiting(Unavailable):
    code = "gitlab_rate_limited"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"


@dataclass(frozen=True)
class GitLabUser:
    id: int
    username: str
    name: str
    admin: bool = False  # an instance administrator (GitLab shows it only to themselves)


@dataclass(frozen=True)
class GitLabProject:
    id: int
    path_with_namespace: str
    default_branch: str
    http_url_to_repo: str
    web_url: str


class GitLabClient:
    def __init__(self, url: str, cache_ttl: float, timeout: float = 10.0, workers: int = 8):
        self.url = url.rstrip("/")
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._clients: OrderedDict[str, gitlab.Gitlab] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="gitlab")
        self._retry_after = threading.local()  # the Retry-After of this thread's last 429

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for client in self._clients.values():
                client.session.close()
            self._clients.clear()

    async def user(self, token: str) -> GitLabUser:
        """The user a token belongs to; Unauthorized when GitLab does not know the token."""

        def fetch() -> GitLabUser:
            me = cast(dict[str, Any], self._get(token, "/user"))
            return GitLabUser(
                int(me["id"]),
                str(me["username"]),
                str(me.get("name") or me["username"]),
                bool(me.get("is_admin")),
            )

        return await self._cached(("user", _digest(token)), fetch)

    async def project(self, token: str, path: str) -> GitLabProject | None:
        """The project as this token sees it (by path, whatever its case, or an old path of
        a renamed project), or None when it may not see it (GitLab answers 404)."""

        def fetch() -> GitLabProject | None:
            found = self._get(token, f"/projects/{quote(path, safe='')}", missing=True)
            if found is None:
                return None
            return GitLabProject(
                id=int(found["id"]),
                path_with_namespace=str(found["path_with_namespace"]),
                default_branch=str(found.get("default_branch") or "main"),
                http_url_to_repo=str(found["http_url_to_repo"]),
                web_url=str(found.get("web_url") or ""),
            )

        return await self._cached(("project", _digest(token), path), fetch, found_only=True)

    async def access_level(self, token: str, project_id: int) -> int:
        """The token's user's level on the project, however they got it (0: none)."""
        me = await self.user(token)
        if me.admin:
            return OWNER

        def fetch() -> int:
            found = self._get(token, f"/projects/{project_id}/members/all/{me.id}", missing=True)
            return int(found.get("access_level") or 0) if found else 0

        return await self._cached(("access", _digest(token), str(project_id)), fetch)

    async def commit(self, token: str, project_id: int, sha: str) -> str | None:
        """The full id of the commit `sha` (40 hex digits, or fewer as long as they name one
        commit), or None when there is no such commit or several start so. GitLab resolves
        branch and tag names here too (doc/api/commits.md): only a commit whose id starts
        with `sha` counts."""

        def fetch() -> str | None:
            path = f"/projects/{project_id}/repository/commits/{quote(sha, safe='')}"
            found = self._get(token, path, missing=True)
            full = str(found.get("id", "")) if found else ""
            return full if full.startswith(sha.lower()) else None

        key = ("commit", _digest(token), str(project_id), sha)
        return await self._cached(key, fetch, found_only=True)

    async def has_branch(self, token: str, project_id: int, branch: str) -> bool:
        def fetch() -> bool:
            path = f"/projects/{project_id}/repository/branches/{quote(branch, safe='')}"
            return self._get(token, path, missing=True) is not None

        key = ("branch", _digest(token), str(project_id), branch)
        return await self._cached(key, fetch, found_only=True)

    async def on_branch(self, token: str, project_id: int, branch: str, sha: str) -> bool:
        """Whether the commit is in the branch's history: then it is its own merge base
        with the branch (doc/api/repositories.md, "Merge base")."""

        def fetch() -> bool:
            found = self._get(
                token,
                f"/projects/{project_id}/repository/merge_base",
                missing=True,
                query={"refs[]": [branch, sha]},
            )
            return bool(found) and found.get("id") == sha

        key = ("on_branch", _digest(token), str(project_id), branch, sha)
        return await self._cached(key, fetch, found_only=True)

    # -- one conversation -------------------------------------------------------------------

    def _get(
        self,
        token: str,
        path: str,
        missing: bool = False,
        query: dict[str, Any] | None = None,
    ) -> Any:
        """GET one resource (None for a 404, or a 400 naming an unknown ref, when
        `missing`); GitLab's refusals as our errors. Runs in a worker thread."""
        self._retry_after.seconds = None
        try:
            return self._client(token).http_get(
                path,
                query_data=query or {},
                obey_rate_limit=False,  # never sleep on GitLab's limit in a shared thread
                max_retries=TRANSIENT_RETRIES,
                retry_transient_errors=True,
            )
        except gitlab.exceptions.GitlabAuthenticationError:
            raise Unauthorized("GitLab does not accept this token") from None
        except gitlab.exceptions.GitlabHttpError as exc:
            if missing and (exc.response_code == 404 or _unknown_ref(exc)):
                return None
            raise self._refusal(exc) from None
        except requests.RequestException as exc:
            raise GitLabError(
                f"GitLab at {self.url} does not answer: {type(exc).__name__}"
            ) from None

    def _refusal(self, exc: gitlab.exceptions.GitlabHttpError) -> GatewayError:
        if exc.response_code == 429:
            seconds = self._retry_after.seconds or 60
            error = GitLabLimiting(f"GitLab is limiting requests; try again in {seconds} s")
            error.headers = {"Retry-After": str(seconds)}
            return error
        scope = _missing_scope(exc)
        if scope is not None:
            return InsufficientScope(
                f"GitLab refuses this token here: it needs one of the scopes {scope}",
                detail={"scope": scope.split()},
            )
        return GitLabError(f"GitLab answered {exc.response_code}: {exc.error_message}")

    def _client(self, token: str) -> gitlab.Gitlab:
        """One client (and connection pool) per token, the most recently used kept."""
        key = _digest(token)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            session = requests.Session()
            session.hooks["response"].append(self._note_retry_after)
            # OAuth tokens and personal access tokens both work as a Bearer token.
            client = gitlab.Gitlab(
                self.url, oauth_token=token, timeout=self.timeout, session=session
            )
            self._clients[key] = client
            while len(self._clients) > CLIENTS:
                _, old = self._clients.popitem(last=False)
                old.session.close()
            return client

    def _note_retry_after(self, response: requests.Response, *_: Any, **__: Any) -> None:
        if response.status_code == 429:
            value = response.headers.get("Retry-After", "")
            self._retry_after.seconds = int(value) if value.isdigit() else None

    async def _cached(
        self, key: tuple[str, ...], fetch: Callable[[], T], found_only: bool = False
    ) -> T:
        """`fetch`'s answer, kept for cache_ttl; with `found_only`, a missing thing is asked
        again each time (a branch or commit pushed a moment ago is there at once)."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return cast(T, hit[1])
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(self._executor, fetch)
        if found_only and not value:
            return value
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self.cache_ttl, value)
        return value


def _missing_scope(exc: gitlab.exceptions.GitlabHttpError) -> str | None:
    """GitLab's 403 for a token without the scope an endpoint needs names the scopes
    (doc/api/rest/authentication.md): {"error": "insufficient_scope", ..., "scope": "..."}."""
    if exc.response_code != 403 or not exc.response_body:
        return None
    try:
        body = json.loads(exc.response_body)
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("error") == "insufficient_scope":
        return str(body.get("scope") or "api")
    return None


def _unknown_ref(exc: gitlab.exceptions.GitlabHttpError) -> bool:
    """GitLab's 400 for a ref it cannot find in a merge base (lib/api/repositories.rb)."""
    return exc.response_code == 400 and "Could not find" in str(exc.error_message)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
