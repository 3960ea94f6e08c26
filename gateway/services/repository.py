"""The notebooks repository as GitLab knows it, to tell its webhook deliveries from other
repositories' (a group or a system hook sends them all): GitLab's project id when the
repository token may ask the API (it finds a renamed project by its old path too), and
otherwise the clone URLs and path of GITLAB_REPO_URL."""

from __future__ import annotations

import logging
import time

from gateway import remotes
from gateway.adapters.gitlab import GitLabClient
from gateway.errors import GatewayError
from gateway.settings import IdentitySettings
from gateway.webhooks import Repository

log = logging.getLogger(__name__)

ASK_AGAIN = 300.0  # seconds before GitLab is asked again after it could not say


class RepositoryIdentity:
    def __init__(self, settings: IdentitySettings, gitlab: GitLabClient | None) -> None:
        self.settings = settings
        self.gitlab = gitlab
        self.path = remotes.repository_path(settings.repo_url, settings.gitlab_url)
        self._known = Repository(
            urls=frozenset({remotes.clone_key(settings.repo_url)} if self.path else ()),
            paths=frozenset({self.path.lower()} if self.path else ()),
        )
        self._asked = -ASK_AGAIN

    async def get(self) -> Repository:
        token = self.settings.gitlab_access_token
        if (
            self._known.project_id is not None
            or self.gitlab is None
            or token is None
            or self.path is None
            or time.monotonic() - self._asked < ASK_AGAIN
        ):
            return self._known
        self._asked = time.monotonic()
        try:
            project = await self.gitlab.project(token.get_secret_value(), self.path)
        except GatewayError as exc:  # a token for git only may not use the API: no matter
            log.info("GitLab cannot say which project the notebooks are: %s", exc.message)
            return self._known
        if project is not None:
            self._known = Repository(
                project.id,
                self._known.urls | {remotes.clone_key(project.http_url_to_repo)},
                self._known.paths | {project.path_with_namespace.lower()},
            )
        return self._known
