"""Users' own servers (renku-notebooks' servers API): a Jupyter server for one GitLab project at
one commit, for one user, reachable through the proxy by that user (and admins) alone.

A request is recorded before anything else happens, then launched in the background: fetch the
project with the user's own token (never stored), build or reuse its image, start the container,
and wait until it answers through the proxy. The record says how far it got; the container says
how it is doing now.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from gateway import naming, renku
from gateway.adapters.git import NotebookRepo
from gateway.adapters.gitlab import DEVELOPER, GitLabClient
from gateway.adapters.images import DockerEngine
from gateway.adapters.registry import RegistryAuth
from gateway.adapters.runtimes.base import ContainerState, Runtime, ServerContainer
from gateway.adapters.store import Store
from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    NotebookFailed,
    NotFound,
    Unavailable,
    Unsatisfiable,
)
from gateway.models import BuildLimits, Identity, Launch, ProgressEvent, RunningNotebook, serving
from gateway.publish import discovery
from gateway.publish.desired import server_image, server_image_labels, server_launch
from gateway.records import ServerRecord, ServerState, WorkVolume, now
from gateway.schemas import IMAGE_REFERENCE, ServerRequest
from gateway.services.deployer import Deployer
from gateway.settings import Settings, parse_bytes
from gateway.webhooks import repository_path

log = logging.getLogger(__name__)

LAUNCH_LOG = 500  # lines of launch output kept per server, for GET /logs before a container exists
ADMIN_ID = 0
# What a failure means, in the words of someone who only wanted a notebook.
FAILURES = {
    "invalid_notebook": "the notebook is not a valid Jupyter notebook",
    "build_failed": "the image build failed",
    "push_failed": "the image could not be pushed to the registry",
    "start_failed": "Jupyter stopped while starting",
    "not_ready": "the server never became ready",
    "out_of_memory": "the server ran out of memory",
}


@dataclass(frozen=True)
class Target:
    """What a notebook host serves, for the proxy's forward-auth."""

    kind: Literal["published", "user"]
    owner_id: int | None = None


class ServerManager:
    def __init__(
        self,
        settings: Settings,
        docker: DockerEngine,
        runtime: Runtime,
        deployer: Deployer,
        gitlab: GitLabClient | None,
        store: Store,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.runtime = runtime
        self.deployer = deployer
        self.gitlab = gitlab
        self.store = store
        self.limits = discovery.ContextLimits(
            settings.max_file_size, settings.max_context_size, settings.max_context_files
        )
        self._launches: dict[str, asyncio.Task[None]] = {}
        self._launch_logs: dict[str, deque[str]] = {}
        self._clone_locks: dict[str, asyncio.Lock] = {}
        self._renewal_slots = asyncio.Semaphore(settings.start_concurrency)
        self._gitlab_web = settings.gitlab_url.rstrip("/")
        self._git_host = urlsplit(self._gitlab_web).hostname or ""
        self.identity_path = repository_path(settings.repo_url, settings.gitlab_url) or ""
        self.build_limits = BuildLimits(
            settings.build_memory_limit,
            settings.build_cpu_limit,
            settings.build_pids_limit,
            settings.server_build_timeout,  # users' repositories get less time
        )

    @property
    def steps(self) -> tuple[str, ...]:
        """The launch's steps; a runtime that starts images from the registry pushes first."""
        pushes = self.runtime.pulls_from_registry
        return tuple(step for step in renku.LAUNCH_STEPS if step != "pushing" or pushes)

    # -- the API --------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """What a user may choose, in renku's shape; no cloud storage (renku 1.31 and 1.10
        say so differently: both are there)."""
        s = self.settings
        return {
            "defaultUrl": _option(
                1, "Default Environment", s.server_default_urls[0], s.server_default_urls
            ),
            "cpu_request": _option(2, "Number of CPUs", s.server_cpu_default, s.server_cpu_options),
            "mem_request": _option(
                3, "Amount of Memory", s.server_memory_default, s.server_memory_options
            ),
            "cloudstorage": {"enabled": False, "s3": {"enabled": False}},
        }

    async def image_status(self, image: str) -> str | None:
        """Why a user may not start from `image` (None when they may): renku's GET /images
        answers 200 for an image that exists and can be pulled. Here it must also be one
        ALLOWED_IMAGES lets users choose."""
        if not IMAGE_REFERENCE.fullmatch(image):
            raise BadRequest(f"image_url {image!r} is not an image reference")
        if not self._allowed(image):
            return f"image {image!r} is not among the images users may choose (ALLOWED_IMAGES)"
        if not await self.docker.image_available(image, self._registry_auth(image)):
            return f"image {image!r} does not exist or cannot be pulled"
        return None

    async def start(self, who: Identity, request: ServerRequest) -> tuple[dict[str, Any], bool]:
        """Start a server, or return the one this user already has (created is False).
        Everything that can be known at once is checked before anything is recorded: the
        options, the project, the user's access, the commit, the branch and the image."""
        options, warnings = self.choose(request)
        if request.image and not self._allowed(request.image):
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
            stopping = self._launches.get(f"stop:{name}")
            if stopping is not None:
                await asyncio.shield(stopping)
            existing = await self.store.get_server(name)
        if existing is not None and existing.state is not ServerState.FAILED:
            view = await self._view(existing)
            if view["status"]["state"] != "failed":
                return view, False
            # Its container died (killed, out of memory): started afresh, its work kept.
            if not await self.store.replace_failed_server(name):
                return await self._view(existing), False
        if existing is not None:  # a failed attempt: start afresh
            await self._remove_containers(name, forced=True)
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
            url=naming.public_url(
                name,
                self.settings.base_domain,
                self.settings.public_scheme,
                self.settings.public_port,
            ),
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
                return await self._view(taken), False  # asked for twice at once
            raise Forbidden(
                f"you already have {limit} servers; stop one first", detail={"limit": limit}
            )
        clone_url = project.http_url_to_repo  # GitLab's own word: sub-paths, renames
        self._launches[name] = asyncio.create_task(self._launch(record, token, clone_url))
        return await self._view(record), True

    async def list(self, who: Identity, filters: dict[str, str]) -> dict[str, dict[str, Any]]:
        records = await self.store.servers(None if who.admin else who.user_id)
        containers = {c.server: c for c in await self.runtime.list_servers()}
        # Side by side: a view asks the engine for the container's stats.
        views = list(await asyncio.gather(*(self._view(r, containers) for r in records)))
        if who.admin:
            notebooks = serving(await self.runtime.list_notebooks()).values()
            views += [self._view_published(n) for n in notebooks]
        wanted = {key: _compared(key, value) for key, value in filters.items()}
        return {
            view["name"]: view
            for view in views
            if all(
                _compared(key, view["annotations"].get(key, "")) == value
                for key, value in wanted.items()
            )
        }

    async def get(self, who: Identity, name: str) -> dict[str, Any]:
        found = await self._find(who, name)
        if isinstance(found, RunningNotebook):
            # One server is read afresh: on Swarm, tasks on other nodes send no events here.
            if (state := await self.runtime.state(found.id)) is not None:
                found = replace(found, running=state.running, status=state.status)
            return self._view_published(found)
        return await self._view(found)

    async def stop(self, who: Identity, name: str, forced: bool, remove: bool = False) -> None:
        """Stopping happens in the background; the server shows `stopping` until it is gone.
        Its work area stays, unless `remove` (JupyterHub's word for a server deleted for
        good): then it goes too, once no other server of the user uses it."""
        record = await self._find(who, name)
        if isinstance(record, RunningNotebook):
            await self._remove_published(record)  # back at the next reconcile
            return
        if remove and record.volume:
            await self._volume_unused(record.volume, but=name)
        if record.state is ServerState.STOPPING and not forced and not remove:
            return
        await self.store.set_server_state(name, ServerState.STOPPING, "stopping")
        launch = self._launches.pop(name, None)
        if launch is not None:
            launch.cancel()
        volume = record.volume if remove else ""
        task = asyncio.create_task(self._stop(name, forced, volume))
        self._launches[f"stop:{name}"] = task
        task.add_done_callback(lambda _: self._launches.pop(f"stop:{name}", None))

    async def logs(self, who: Identity, name: str, max_lines: int | None) -> str:
        """The server's last `max_lines` lines (all of them for None): Jupyter's once its
        container exists, the launch's (build output included) before."""
        found = await self._find(who, name)
        if isinstance(found, RunningNotebook):
            return "\n".join(await self.runtime.logs_tail(found.id, max_lines))
        container = next((c for c in await self.runtime.list_servers() if c.server == name), None)
        if container is not None:
            return "\n".join(await self.runtime.logs_tail(container.id, max_lines))
        launch = list(self._launch_logs.get(name, ()))
        return "\n".join(launch if max_lines is None else launch[-max_lines:])

    async def target(self, host: str) -> Target | None:
        """Who may reach this host: a published notebook (no owner) or a user's server."""
        label, dot, domain = host.lower().partition(".")
        if not dot or domain != self.settings.base_domain:
            return None
        if "--" in label:
            return Target("published")
        record = await self.store.get_server(label)
        return Target("user", record.user_id) if record else None

    # -- lifecycle ------------------------------------------------------------------------

    async def recover(self) -> None:
        """After a restart: launches that were cut off cannot resume (the user's token is gone
        with the request), stops that were cut off finish now."""
        containers = {c.server: c for c in await self.runtime.list_servers()}
        for record in await self.store.servers():
            container = containers.get(record.name)
            if record.state is ServerState.STOPPING:
                await self._stop(record.name, forced=True)
            elif record.state is ServerState.STARTING:
                if container is not None and container.state == "running":
                    await self.store.set_server_state(record.name, ServerState.RUNNING)
                else:
                    await self._remove_containers(record.name, forced=True)
                    await self.store.set_server_state(
                        record.name, ServerState.FAILED,
                        "the gateway restarted while this server was starting; start it again",
                    )  # fmt: skip

    async def reconcile(self) -> None:
        """Containers of servers nobody asked for go; records of servers whose container
        vanished say so; running servers started under other settings, or by an earlier
        version of the gateway, are started again as the current ones would be. It starts
        from the engine's own list, not from events so far."""
        await self.runtime.resync()
        records = {r.name: r for r in await self.store.servers()}
        containers = await self.runtime.list_servers()
        for container in containers:
            if container.server not in records:
                log.info("removing the container of unknown server %s", container.server)
                await self.runtime.remove(container.id)
        present = {c.server for c in containers}
        for record in records.values():
            if record.state is ServerState.RUNNING and record.name not in present:
                await self.store.set_server_state(
                    record.name,
                    ServerState.FAILED,
                    "the server's container is gone; start it again",
                )
        renewals = []
        nodes = {v.name: v.node for v in await self.store.volumes()}
        for container in await self._one_each(containers, records):
            found = records[container.server]
            if found.state is not ServerState.RUNNING:
                continue  # starting, stopping or failed: its own task decides
            launch = self._current_launch(found, container.image, nodes.get(found.volume, ""))
            if container.shape != launch.shape and found.name not in self._launches:
                task = asyncio.create_task(self._renew(found, container, launch))
                self._launches[found.name] = task
                renewals.append(task)
        await asyncio.gather(*renewals, return_exceptions=True)

    async def _one_each(
        self, containers: Iterable[ServerContainer], records: dict[str, ServerRecord]
    ) -> Iterable[ServerContainer]:
        """One container per recorded server: a hand-over cut short by a restart leaves two,
        and the one that runs, shaped as now, stays."""
        by_server: dict[str, Sequence[ServerContainer]] = {}
        for container in containers:
            if container.server in records:
                by_server[container.server] = (*by_server.get(container.server, ()), container)
        kept = []
        for name, found in by_server.items():
            best = max(found, key=lambda c: (c.state == "running", bool(c.shape)))
            kept.append(best)
            if name in self._launches:
                continue  # a start or a hand-over under way
            for container in found:
                if container is not best:
                    await self.runtime.remove(container.id, graceful=False)
        return kept

    async def _renew(self, record: ServerRecord, old: ServerContainer, launch: Launch) -> None:
        """One hand-over to a container shaped as the current settings make it, from the
        image the server runs. Files changed in the old container do not come along. An old
        container without a shape was started by a gateway whose Jupyter answered anyone who
        reached it: it never serves again, even if its successor fails."""
        name = record.name
        log.info("restarting server %s with the gateway's current settings", name)
        await self.store.set_server_state(
            name,
            ServerState.STARTING,
            "restarting with the gateway's current settings",
            step="answering",
        )
        fallback = bool(old.shape)
        try:
            async with self._renewal_slots:
                handover = await self.runtime.start(launch, replaces=[old.id])
                failure = await self.deployer.wait_until_answering(
                    handover.id, self._host(name), launch.limits.memory, stop=not fallback
                )
            if failure is None:
                await self.runtime.complete(handover)
                await self.store.set_server_state(name, ServerState.RUNNING)
                return
            if fallback:
                await self.runtime.revert(handover)
                await self.store.set_server_state(name, ServerState.RUNNING)
                log.warning("server %s could not be restarted: %s", name, failure.message)
                return
            await self._remove_containers(name, forced=True)
            await self._fail(name, _in_words(failure, record))
        except NotebookFailed as failure:
            await self._fail(name, _in_words(failure, record))
        except GatewayError as exc:
            await self._fail(name, exc.message)
        finally:
            self._launches.pop(name, None)

    def _current_launch(self, record: ServerRecord, image: str, node: str = "") -> Launch:
        labels = server_image_labels(self.settings, record.namespace, record.project)
        # As it was asked for: an engine may add the digest it resolved the tag to.
        return server_launch(record, image.partition("@")[0], self.settings, labels, node)

    def _host(self, name: str) -> str:
        return f"{name}.{self.settings.base_domain}"

    async def close(self) -> None:
        tasks = list(self._launches.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- launching ------------------------------------------------------------------------

    async def _launch(self, record: ServerRecord, token: str, clone_url: str) -> None:
        name = record.name
        lines = self._launch_logs.setdefault(name, deque(maxlen=LAUNCH_LOG))

        def emit(event: ProgressEvent) -> None:
            lines.append(event.message)

        async def step(key: str, message: str) -> None:
            lines.append(message)
            await self.store.set_server_state(name, ServerState.STARTING, message, step=key)

        try:
            await step("cloning", "fetching the repository")
            clone_dir = self.settings.state_dir / "servers" / _digest(clone_url)
            repo = NotebookRepo(
                clone_url, clone_dir / "repo.git", branch=record.branch, token=token,
                timeout=self.settings.git_timeout,
            )  # fmt: skip
            async with self._clone_locks.setdefault(str(clone_dir), asyncio.Lock()):
                await repo.fetch()
            if not await repo.has_commit(record.commit_sha):
                raise GatewayError(
                    f"commit {record.commit_sha[:12]} is not on branch {record.branch!r}"
                )
            entries = await repo.repository_entries(record.commit_sha)
            snapshot = discovery.snapshot("", record.commit_sha, entries, self.limits)
            if record.notebook and record.notebook not in {n.path for n in snapshot.notebooks}:
                raise GatewayError(f"there is no notebook {record.notebook!r} at this commit")
            base = record.image or self.settings.base_image
            base_identity = await self.docker.image_id(base) or await self.docker.pull(base)
            spec = server_image(
                snapshot, self.settings, base, base_identity, record.namespace, record.project
            )
            await step("building", "building the image")
            await self.deployer.check_registry(emit)
            mtime = await repo.commit_time(record.commit_sha)
            await self.deployer.ensure_image(spec, repo, mtime, self.build_limits, emit)
            if self.runtime.pulls_from_registry:  # any node may start it
                await step("pushing", "pushing the image to the registry")
                await self.deployer.push_image(spec, emit)
            await step("starting", "starting Jupyter")
            node = await self._use_volume(record)
            launched = time.monotonic()
            launch = server_launch(record, spec.image, self.settings, spec.labels, node)
            # A server replaces nothing: there is no handover to complete.
            handover = await self.runtime.start(launch)
            if (
                record.volume
                and not node
                and (node := await self.runtime.keep_on_its_node(handover.id))
            ):
                await self.store.set_volume_node(record.volume, node)
            await step("answering", "waiting for Jupyter to answer")
            failure = await self.deployer.wait_until_answering(
                handover.id, self._host(name), launch.limits.memory
            )
            self.deployer.observe_launch("user", launched, ok=failure is None)
            if failure is not None:
                raise failure
            lines.append(f"answering at {record.url}")
            await self.store.set_server_state(name, ServerState.RUNNING)
            if not self.runtime.pulls_from_registry:
                try:  # the registry's copy: the server runs on without it
                    await self.deployer.push_image(spec, emit)
                except (NotebookFailed, GatewayError) as push_failure:
                    lines.append(f"warning: {push_failure.message}")
        except asyncio.CancelledError:
            raise
        except NotebookFailed as failure:
            lines.extend(failure.log)
            await self._fail(name, _in_words(failure, record))
        except GatewayError as exc:
            await self._fail(name, exc.message)
        except Exception:
            log.exception("starting server %s failed", name)
            await self._fail(name, "an internal error stopped the start; see the gateway's log")
        finally:
            self._launches.pop(name, None)

    async def _work_area(self, who: Identity, namespace: str, project: str) -> str:
        """The user's work area for the project: the one they have (by their GitLab id, as
        their username may have changed since), or a new name."""
        for volume in await self.store.volumes(who.user_id):
            if (volume.namespace, volume.project) == (namespace, project):
                return volume.name
        s = self.settings
        return naming.work_volume(s.instance, who.user_id, who.username, namespace, project)

    async def _use_volume(self, record: ServerRecord) -> str:
        """Record that the server's work area is in use; the node that holds it, if any."""
        if not record.volume:
            return ""
        known = await self.store.get_volume(record.volume)
        await self.store.use_volume(
            WorkVolume(
                record.volume, record.user_id, record.username, record.namespace,
                record.project, created_at=now(), used_at=now(),
            )
        )  # fmt: skip
        return known.node if known else ""

    async def _fail(self, name: str, message: str) -> None:
        self._launch_logs.setdefault(name, deque(maxlen=LAUNCH_LOG)).append(message)
        if await self.store.get_server(name) is not None:
            await self.store.set_server_state(name, ServerState.FAILED, message)

    async def _stop(self, name: str, forced: bool, volume: str = "") -> None:
        await self._remove_containers(name, forced)
        await self.store.delete_server(name)
        self._launch_logs.pop(name, None)
        if volume:
            await self._remove_volume(volume)

    # -- work areas -----------------------------------------------------------------------

    async def volumes(self) -> Sequence[dict[str, Any]]:
        """Every user's work areas, for an admin: whose, how big, which servers use them."""
        sizes = await self.runtime.volume_sizes()
        users: dict[str, tuple[str, ...]] = {}
        for record in await self.store.servers():
            if record.volume:
                users[record.volume] = (*users.get(record.volume, ()), record.name)
        return [
            _volume_view(volume, sizes.get(volume.name), users.get(volume.name, ()))
            for volume in await self.store.volumes()
        ]

    async def remove_volume(self, name: str) -> None:
        """An admin removes a work area (of a user who has gone, say): never one in use."""
        if await self.store.get_volume(name) is None:
            raise NotFound(f"there is no work area {name!r}")
        await self._volume_unused(name)
        await self._remove_volume(name)

    async def _volume_unused(self, volume: str, but: str = "") -> None:
        users = [r.name for r in await self.store.servers() if r.volume == volume and r.name != but]
        if users:
            raise Conflict(
                f"work area {volume} is used by server {users[0]}; stop it first",
                detail={"servers": users},
            )

    async def _remove_volume(self, volume: str) -> None:
        """The engine refuses while a container it just stopped still holds the volume: a
        few tries, then the record stays, for an admin to remove it later."""
        for attempt in range(10):
            if await self.runtime.remove_volume(volume):
                await self.store.delete_volume(volume)
                log.info("removed work area %s", volume)
                return
            await asyncio.sleep(0.5 * (attempt + 1))
        raise Conflict(f"work area {volume} is still in use by a container")

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

    async def _remove_containers(self, name: str, forced: bool) -> None:
        for container in await self.runtime.list_servers():
            if container.server == name:
                await self.runtime.remove(container.id, graceful=not forced)

    # -- views ----------------------------------------------------------------------------

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

    async def _view(
        self, record: ServerRecord, containers: dict[str, ServerContainer] | None = None
    ) -> dict[str, Any]:
        """The server object renku's clients read (renku.py), from the record and how its
        container is doing."""
        alone = containers is None  # then read afresh, as for a published notebook
        if containers is None:
            containers = {c.server: c for c in await self.runtime.list_servers()}
        container = containers.get(record.name)
        state = usage = None
        if container is not None and (alone or container.state != "running"):
            state = await self.runtime.state(container.id)
            if state is None:  # gone since the index last heard of it
                container = None
            elif state.status == "running":
                state = None  # running: nothing to look into (server_status)
        if container is not None and state is None and record.state is not ServerState.STOPPING:
            usage = await self.runtime.usage(container.id)
        memory = str(record.options.get("mem_request", self.settings.server_memory_default))
        storage = (await self.runtime.volume_sizes()).get(record.volume)
        status, message = server_status(
            record.state, record.message, container is not None, state, parse_bytes(memory) // 2**20
        )
        # Recorded running, and its container in trouble since: the last step is where.
        step = self.steps[-1] if record.state is ServerState.RUNNING else record.step
        namespace, project = record.namespace, record.project
        return {
            "name": record.name,
            "url": record.url,
            "image": container.image if container else "",
            "started": record.created_at,
            "status": renku.status(
                status, message, renku.details(self.steps, status, step), record.warnings
            ),
            "annotations": renku.annotate(
                {
                    "namespace": namespace,
                    "project": project,
                    "branch": record.branch,
                    "commit_sha": record.commit_sha,
                    "notebook": record.notebook,
                    "user": record.username,
                },
                namespace=namespace,
                project=project,
                branch=record.branch,
                commit_sha=record.commit_sha,
                repository=record.repository or f"{self._gitlab_web}/{namespace}/{project}",
                server_name=record.name,
                username=record.username,
                gitlab_project_id=record.gitlab_project_id,
                git_host=self._git_host,
            ),
            "resources": renku.resources(
                float(record.options.get("cpu_request", self.settings.server_cpu_default)),
                memory,
                usage,
                storage,
            ),
            "volume": {"name": record.volume, "size": storage} if record.volume else None,
        }

    def _view_published(self, notebook: RunningNotebook) -> dict[str, Any]:
        """A published notebook, as an admin sees it among the servers: its repository is
        the notebooks repository, its project the folder."""
        state = "running" if notebook.running else "failed"
        message = "" if notebook.running else f"the container is {notebook.status}"
        path = self.identity_path
        namespace, _, repository_name = path.rpartition("/")
        return {
            "name": notebook.server,
            "url": notebook.url,
            "image": notebook.image,
            "started": None,  # published notebooks are not asked for: no moment to tell
            "status": renku.status(state, message, renku.details(self.steps, state, "")),
            "annotations": renku.annotate(
                {
                    "namespace": "",
                    "project": notebook.project,
                    "branch": self.settings.git_branch,
                    "commit_sha": notebook.commit,
                    "notebook": notebook.path,
                    "user": "",
                },
                namespace=namespace,
                project=repository_name,
                branch=self.settings.git_branch,
                commit_sha=notebook.commit,
                repository=f"{self._gitlab_web}/{path}" if path else self.settings.repo_url,
                server_name=notebook.server,
                git_host=self._git_host,
            ),
            "resources": renku.resources(
                self.settings.cpu_limit, f"{self.settings.memory_limit // 2**20}M", None
            ),
            "volume": None,  # a fresh state at every deploy
        }

    # -- helpers --------------------------------------------------------------------------

    def choose(self, request: ServerRequest) -> tuple[dict[str, Any], Sequence[str]]:
        """The options a server starts with, and what was asked for and is not done here.
        Processor, memory and default URL must be among GET /server_options (400 otherwise);
        renku's other options are ignored with a warning when they mean nothing here, and
        refused (422) when they cannot be had: a GPU, cloud storage, secrets, variables."""
        s, chosen = self.settings, request.serverOptions
        cpu = s.server_cpu_default if chosen.cpu_request is None else chosen.cpu_request
        url = chosen.defaultUrl or request.default_url or s.server_default_urls[0]
        memory = self._memory_option(chosen.mem_request or s.server_memory_default)
        problems = []
        if cpu not in s.server_cpu_options:
            problems.append(
                f"serverOptions.cpu_request: {chosen.cpu_request!r} is not one of"
                f" {list(s.server_cpu_options)}"
            )
        if memory is None:
            problems.append(
                f"serverOptions.mem_request: {chosen.mem_request!r} is not one of"
                f" {list(s.server_memory_options)}"
            )
        if url not in s.server_default_urls:
            problems.append(
                f"serverOptions.defaultUrl: {url!r} is not one of {list(s.server_default_urls)}"
            )
        if problems:
            raise BadRequest("; ".join(problems), detail={"problems": problems})
        refused = []
        if chosen.gpu_request not in (None, 0, "0", ""):
            refused.append(f"serverOptions.gpu_request: {chosen.gpu_request!r}: there are no GPUs")
        if request.environment_variables:
            refused.append("environment_variables: servers here cannot be given variables")
        if request.cloudstorage:
            refused.append("cloudstorage: cloud storage cannot be mounted here")
        if request.user_secrets:
            refused.append("user_secrets: secrets cannot be mounted here")
        if refused:
            raise Unsatisfiable("; ".join(refused), detail={"problems": refused})
        warnings = []
        if chosen.disk_request not in (None, "", 0) or request.storage is not None:
            warnings.append(
                "disk_request/storage ignored: a server's files live in its work area, a"
                " volume without a quota of its own"
            )
        if chosen.lfs_auto_fetch or request.lfs_auto_fetch:
            warnings.append(
                "lfs_auto_fetch ignored: Git LFS files are not fetched, they show as pointers"
            )
        if request.resource_class_id is not None:
            warnings.append(
                "resource_class_id ignored: there are no resource classes here; the server"
                " has the serverOptions' processor and memory, or the defaults"
            )
        return {"defaultUrl": url, "cpu_request": cpu, "mem_request": memory}, warnings

    def _memory_option(self, asked: str) -> str | None:
        """The memory option meant: written as listed, or the same size otherwise ("1024M"
        for "1G"; Docker's binary units)."""
        options = self.settings.server_memory_options
        if asked in options:
            return asked
        try:
            size = parse_bytes(asked)
        except ValueError:
            return None
        return next((option for option in options if parse_bytes(option) == size), None)

    def _allowed(self, image: str) -> bool:
        """BASE_IMAGE, which servers start from anyway, and what ALLOWED_IMAGES lets users
        choose; never an image this gateway built, whatever the patterns say: it holds a
        project's files, maybe private ones."""
        s = self.settings
        if image.startswith(f"{naming.image_prefix(s.registry_host)}/{s.instance}/"):
            return False
        patterns = s.allowed_images
        return image == s.base_image or any(fnmatch.fnmatchcase(image, p) for p in patterns)

    def _registry_auth(self, image: str) -> RegistryAuth | None:
        """The gateway's registry credentials, for images in its registry only."""
        registry = self.deployer.registry
        if registry is None or not image.startswith(f"{registry.server}/"):
            return None
        return registry.auth

    def _require_gitlab(self) -> GitLabClient:
        if self.gitlab is None:
            raise Unavailable("the servers API needs a GitLab instance; set GITLAB_URL")
        return self.gitlab

    def _gateway_token(self) -> str:
        if self.settings.gitlab_access_token is None:
            raise Forbidden("the admin token cannot act on GitLab without GITLAB_ACCESS_TOKEN")
        return self.settings.gitlab_access_token.get_secret_value()


def server_status(
    recorded: ServerState,
    message: str,
    has_container: bool,
    container: ContainerState | None,
    memory_mib: int,
) -> tuple[str, str]:
    """The state a user sees, from how far the launch got and how the container is doing.
    `container` is only inspected when it is not running."""
    if recorded in (ServerState.STOPPING, ServerState.FAILED, ServerState.STARTING):
        return str(recorded), message
    if not has_container:
        return "failed", "the server's container is gone; start it again"
    if container is None:
        return "running", ""
    if container.oom_killed:
        return (
            "failed",
            f"the server ran out of memory (limit {memory_mib} MiB); restart it or ask for more",
        )
    if container.status == "unplaced":
        return "failed", f"no node can run the server now: {container.error}"
    if container.status == "restarting" or (container.running and container.restart_count):
        return "starting", "restarting after a crash"
    if not container.running:
        return "failed", f"the server stopped unexpectedly (exit code {container.exit_code})"
    return "running", ""


def _in_words(failure: NotebookFailed, record: ServerRecord) -> str:
    words = FAILURES.get(failure.reason, "the server could not start")
    if failure.reason == "out_of_memory":
        return f"{words} (limit {record.options['mem_request']}); ask for more memory"
    if failure.message.startswith(words):
        return failure.message
    return f"{words}: {failure.message}"


def _compared(key: str, value: str) -> str:
    """An annotation as a GET /servers filter compares it: GitLab paths whatever their case."""
    return value.lower() if key in ("namespace", "project", "commit_sha") else value


def _volume_view(volume: WorkVolume, size: int | None, servers: Sequence[str]) -> dict[str, Any]:
    return {
        "name": volume.name,
        "user": volume.username,
        "user_id": volume.user_id,
        "namespace": volume.namespace,
        "project": volume.project,
        "size": size,
        "node": volume.node,
        "created_at": volume.created_at,
        "used_at": volume.used_at,
        "servers": list(servers),
    }


def _option(order: int, name: str, default: Any, options: Iterable[Any]) -> dict[str, Any]:
    return {
        "order": order,
        "displayName": name,
        "type": "enum",
        "default": default,
        "options": list(options),
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
