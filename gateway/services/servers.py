"""Users' own servers (renku-notebooks' servers API): a Jupyter server for one GitLab project at
one commit, for one user, reachable through the proxy by that user (and admins) alone.

The facade the API calls: it checks a request against the options, GitLab and the user's
access, records it, and hands it to the lifecycle (server_lifecycle.py), which launches it in
the background. Answers are the API's models, from the views (server_views.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Literal

from gateway import naming
from gateway.adapters.gitlab import DEVELOPER, GitLabClient
from gateway.adapters.images import DockerEngine
from gateway.adapters.runtimes.base import Runtime
from gateway.adapters.store import Store
from gateway.errors import BadRequest, Forbidden, NotFound, Unavailable
from gateway.models import Identity, RunningNotebook, serving
from gateway.records import ServerRecord, ServerState, now
from gateway.references import is_image_reference
from gateway.schemas import Server, ServerOptions, ServerRequest, Volume
from gateway.servers import policy
from gateway.services.images import ImageSupply
from gateway.services.server_lifecycle import ServerLifecycle
from gateway.services.server_views import ServerViews, volume_view
from gateway.settings import ServerSettings


@dataclass(frozen=True)
class Target:
    """What a notebook host serves, for the proxy's forward-auth."""

    kind: Literal["published", "user"]
    owner_id: int | None = None


class ServerManager:
    def __init__(
        self,
        settings: ServerSettings,
        docker: DockerEngine,
        runtime: Runtime,
        images: ImageSupply,
        lifecycle: ServerLifecycle,
        gitlab: GitLabClient | None,
        store: Store,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.runtime = runtime
        self.images = images
        self.lifecycle = lifecycle
        self.gitlab = gitlab
        self.store = store
        self.views = ServerViews(settings, runtime)

    def options(self) -> ServerOptions:
        return policy.options(self.settings)

    async def image_status(self, image: str) -> str | None:
        """Why a user may not start from `image` (None when they may): renku's GET /images
        answers 200 for an image that exists and can be pulled. Here it must also be one
        ALLOWED_IMAGES lets users choose."""
        if not is_image_reference(image):
            raise BadRequest(f"image_url {image!r} is not an image reference")
        if not policy.allowed(self.settings, image):
            return f"image {image!r} is not among the images users may choose (ALLOWED_IMAGES)"
        if not await self.docker.image_available(image, self.images.auth_for(image)):
            return f"image {image!r} does not exist or cannot be pulled"
        return None

    async def start(self, who: Identity, request: ServerRequest) -> tuple[Server, bool]:
        """Start a server, or return the one this user already has (created is False).
        Everything that can be known at once is checked before anything is recorded: the
        options, the project, the user's access, the commit, the branch and the image."""
        options, warnings = policy.choose(self.settings, request)
        if request.image and not policy.allowed(self.settings, request.image):
            raise BadRequest(
                f"image {request.image!r} is not allowed",
                detail={"allowed": list(self.settings.allowed_images)},
            )
        gitlab = self._require_gitlab()
        token = who.token or self._gateway_token()
        path = f"{request.namespace}/{request.project}"
        project = await gitlab.project(token, path)
        if project is None:
            raise NotFound(f"there is no GitLab project {path} (or you may not see it)")
        if not who.admin and await gitlab.access_level(token, project.id) < DEVELOPER:
            raise Forbidden(f"starting a server needs developer access to {path}")
        commit = await gitlab.commit(token, project.id, request.commit_sha)
        if commit is None:
            raise NotFound(
                f"there is no commit {request.commit_sha} in {path}"
                + (" (or several start so)" if len(request.commit_sha) < 40 else "")
            )
        branch = request.branch or project.default_branch
        if not await gitlab.has_branch(token, project.id, branch):
            raise NotFound(f"there is no branch {branch!r} in {path}")
        if not await gitlab.on_branch(token, project.id, branch, commit):
            raise NotFound(f"commit {commit[:12]} is not on branch {branch!r}")
        if request.image and (reason := await self.image_status(request.image)):
            raise NotFound(reason)
        name = naming.server_name(who.username, request.namespace, request.project, branch, commit)
        existing = await self.store.get_server(name)
        if existing is not None and existing.state is ServerState.STOPPING:
            # Asked to start again while it stops: let it finish, then start afresh.
            await self.lifecycle.stopped(name)
            existing = await self.store.get_server(name)
        if existing is not None and existing.state is not ServerState.FAILED:
            view = await self.views.server(existing)
            if view.status.state != "failed":
                return view, False
            # Its container died (killed, out of memory): started afresh, its work kept.
            if not await self.store.replace_failed_server(name):
                return await self.views.server(existing), False
        if existing is not None:  # a failed attempt: start afresh
            await self.lifecycle.remove_containers(name, forced=True)
        s = self.settings
        record = ServerRecord(
            name=name,
            user_id=who.user_id,
            username=who.username,
            namespace=request.namespace,
            project=request.project,
            branch=branch,
            commit_sha=commit,
            notebook=request.notebook or "",
            image=request.image or "",
            options=options,
            state=ServerState.STARTING,
            message="queued",
            url=naming.public_url(name, s.base_domain, s.public_scheme, s.public_port),
            created_at=now(),
            updated_at=now(),
            gitlab_project_id=project.id,
            repository=project.web_url,
            warnings=[*warnings],
            volume=await self._work_area(who, request.namespace, request.project),
        )
        limit = self.settings.max_servers_per_user
        if not await self.store.add_server(record, limit):
            taken = await self.store.get_server(name)
            if taken is not None and taken.state is not ServerState.FAILED:
                return await self.views.server(taken), False  # asked for twice at once
            raise Forbidden(
                f"you already have {limit} servers; stop one first", detail={"limit": limit}
            )
        # GitLab's own word for where to clone: sub-paths, renames.
        self.lifecycle.launch(record, token, project.http_url_to_repo)
        return await self.views.server(record), True

    async def list_servers(self, who: Identity, filters: dict[str, str]) -> dict[str, Server]:
        records = await self.store.servers(None if who.admin else who.user_id)
        containers = {c.server: c for c in await self.runtime.list_servers()}
        # Side by side: a view asks the engine for the container's stats.
        views = list(await asyncio.gather(*(self.views.server(r, containers) for r in records)))
        if who.admin:
            notebooks = serving(await self.runtime.list_notebooks()).values()
            views += [self.views.published(n) for n in notebooks]
        wanted = {key: policy.compared(key, value) for key, value in filters.items()}
        return {
            view.name: view
            for view in views
            if all(
                policy.compared(key, view.annotations.get(key, "")) == value
                for key, value in wanted.items()
            )
        }

    async def get(self, who: Identity, name: str) -> Server:
        found = await self._find(who, name)
        if isinstance(found, RunningNotebook):
            # One server is read afresh: on Swarm, tasks on other nodes send no events here.
            if (state := await self.runtime.state(found.id)) is not None:
                found = replace(found, running=state.running, status=state.status)
            return self.views.published(found)
        return await self.views.server(found)

    async def stop(self, who: Identity, name: str, forced: bool, remove: bool = False) -> None:
        """Stopping happens in the background; the server shows `stopping` until it is gone.
        Its work area stays, unless `remove` (JupyterHub's word for a server deleted for
        good): then it goes too, once no other server of the user uses it."""
        record = await self._find(who, name)
        if isinstance(record, RunningNotebook):
            await self._remove_published(record)  # back at the next reconcile
            return
        if remove and record.volume:
            await self.lifecycle.volume_unused(record.volume, but=name)
        if record.state is ServerState.STOPPING and not forced and not remove:
            return
        await self.store.set_server_state(name, ServerState.STOPPING, "stopping")
        self.lifecycle.stop(name, forced, record.volume if remove else "")

    async def logs(self, who: Identity, name: str, max_lines: int | None) -> str:
        """The server's last `max_lines` lines (all of them for None): Jupyter's once its
        container exists, the launch's (build output included) before."""
        found = await self._find(who, name)
        if isinstance(found, RunningNotebook):
            return "\n".join(await self.runtime.logs_tail(found.id, max_lines))
        containers = await self.lifecycle.containers_of(name)
        if containers:
            return "\n".join(await self.runtime.logs_tail(containers[0].id, max_lines))
        launch = self.lifecycle.launch_log(name)
        return "\n".join(launch if max_lines is None else launch[-max_lines:])

    async def target(self, host: str) -> Target | None:
        """Who may reach this host: a published notebook (no owner) or a user's server."""
        label = policy.notebook_host(host, self.settings.base_domain)
        if label is None:
            return None
        if "--" in label:
            return Target("published")
        record = await self.store.get_server(label)
        return Target("user", record.user_id) if record else None

    # -- work areas -----------------------------------------------------------------------

    async def volumes(self) -> list[Volume]:
        """Every user's work areas, for an admin: whose, how big, which servers use them."""
        sizes = await self.runtime.volume_sizes()
        users: dict[str, tuple[str, ...]] = {}
        for record in await self.store.servers():
            if record.volume:
                users[record.volume] = (*users.get(record.volume, ()), record.name)
        return [
            volume_view(volume, sizes.get(volume.name), users.get(volume.name, ()))
            for volume in await self.store.volumes()
        ]

    async def remove_volume(self, name: str) -> None:
        """An admin removes a work area (of a user who has gone, say): never one in use."""
        if await self.store.get_volume(name) is None:
            raise NotFound(f"there is no work area {name!r}")
        await self.lifecycle.volume_unused(name)
        await self.lifecycle.remove_volume(name)

    async def _work_area(self, who: Identity, namespace: str, project: str) -> str:
        """The user's work area for the project: the one they have (by their GitLab id, as
        their username may have changed since), or a new name."""
        for volume in await self.store.volumes(who.user_id):
            if (volume.namespace, volume.project) == (namespace, project):
                return volume.name
        s = self.settings
        return naming.work_volume(s.instance, who.user_id, who.username, namespace, project)

    # -- finding ---------------------------------------------------------------------------

    async def _visible(self, who: Identity, name: str) -> ServerRecord | None:
        """Someone else's server answers exactly as a missing one does."""
        record = await self.store.get_server(name)
        if record is None or not (who.admin or record.user_id == who.user_id):
            return None
        return record

    async def _find(self, who: Identity, name: str) -> ServerRecord | RunningNotebook:
        """The caller's server (anyone's, for an admin) or, for an admin, the container of a
        published notebook by that name. Anything else is a missing server."""
        record = await self._visible(who, name)
        if record is not None:
            return record
        if who.admin and (published := await self._published(name)) is not None:
            return published
        raise NotFound(f"there is no server {name!r}")

    async def _published(self, name: str) -> RunningNotebook | None:
        notebooks = serving(await self.runtime.list_notebooks()).values()
        return next((n for n in notebooks if n.server == name), None)

    async def _remove_published(self, notebook: RunningNotebook) -> None:
        """Every container of the notebook: during a hand-over the old version waits, stopped,
        and would serve again once its successor is found gone. It goes first, so it is not
        started again meanwhile."""
        containers = [
            c
            for c in await self.runtime.list_notebooks(notebook.project)
            if c.path == notebook.path
        ]
        for container in sorted(containers, key=lambda c: c.running):
            await self.runtime.remove(container.id)

    def _require_gitlab(self) -> GitLabClient:
        if self.gitlab is None:
            raise Unavailable("the servers API needs a GitLab instance; set GITLAB_URL")
        return self.gitlab

    def _gateway_token(self) -> str:
        if self.settings.gitlab_access_token is None:
            raise Forbidden("the admin token cannot act on GitLab without GITLAB_ACCESS_TOKEN")
        return self.settings.gitlab_access_token.get_secret_value()
