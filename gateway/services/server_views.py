"""Servers as renku's clients read them (schemas.Server): from a server's record and how its
container is doing, or from a published notebook's container."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from gateway import remotes
from gateway.adapters.runtimes.base import Runtime
from gateway.models import RunningNotebook, RunningServer
from gateway.records import ServerRecord, ServerState, WorkVolume
from gateway.schemas import Server, ServerPhase, ServerVolume, Volume
from gateway.servers import renku
from gateway.servers.policy import server_status
from gateway.settings import ServerSettings, parse_bytes


class ServerViews:
    def __init__(self, settings: ServerSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._gitlab_web = settings.gitlab_url.rstrip("/")
        self._git_host = urlsplit(self._gitlab_web).hostname or ""
        self._identity_path = remotes.repository_path(settings.repo_url, settings.gitlab_url) or ""

    @property
    def steps(self) -> tuple[str, ...]:
        """The launch's steps; a runtime that starts images from the registry pushes first."""
        pushes = self.runtime.pulls_from_registry
        return tuple(step for step in renku.LAUNCH_STEPS if step != "pushing" or pushes)

    async def server(
        self, record: ServerRecord, containers: Mapping[str, RunningServer] | None = None
    ) -> Server:
        """A user's server, from its record and how its container is doing. Without
        `containers` (the index's list) the container is read afresh."""
        alone = containers is None  # then read afresh, as for a published notebook
        if containers is None:
            containers = {c.server: c for c in await self.runtime.list_servers()}
        container = containers.get(record.name)
        state = usage = None
        if container is not None and (alone or not container.running):
            state = await self.runtime.state(container.id)
            if state is None:  # gone since the index last heard of it
                container = None
            elif state.status == "running":
                state = None  # running: nothing to look into (server_status)
        if container is not None and state is None and record.state is not ServerState.STOPPING:
            usage = await self.runtime.usage(container.id)
        memory = str(record.options.get("mem_request", self.settings.server_memory_default))
        storage = (await self.runtime.volume_sizes()).get(record.volume)
        phase, message = server_status(
            record.state, record.message, container is not None, state, parse_bytes(memory) // 2**20
        )
        # Recorded running, and its container in trouble since: the last step is where.
        step = self.steps[-1] if record.state is ServerState.RUNNING else record.step
        namespace, project = record.namespace, record.project
        return Server(
            name=record.name,
            url=record.url,
            image=container.image if container else "",
            started=record.created_at,
            status=renku.status(
                phase, message, renku.details(self.steps, phase, step), record.warnings
            ),
            annotations=renku.annotate(
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
            resources=renku.resources(
                float(record.options.get("cpu_request", self.settings.server_cpu_default)),
                memory,
                usage,
                storage,
            ),
            volume=ServerVolume(name=record.volume, size=storage) if record.volume else None,
        )

    def published(self, notebook: RunningNotebook) -> Server:
        """A published notebook, as an admin sees it among the servers: its repository is
        the notebooks repository, its project the folder."""
        phase: ServerPhase = "running" if notebook.running else "failed"
        message = "" if notebook.running else f"the container is {notebook.status}"
        path = self._identity_path
        namespace, _, repository_name = path.rpartition("/")
        s = self.settings
        return Server(
            name=notebook.server,
            url=notebook.url,
            image=notebook.image,
            started=None,  # published notebooks are not asked for: no moment to tell
            status=renku.status(phase, message, renku.details(self.steps, phase, "")),
            annotations=renku.annotate(
                {
                    "namespace": "",
                    "project": notebook.project,
                    "branch": s.git_branch,
                    "commit_sha": notebook.commit,
                    "notebook": notebook.path,
                    "user": "",
                },
                namespace=namespace,
                project=repository_name,
                branch=s.git_branch,
                commit_sha=notebook.commit,
                repository=f"{self._gitlab_web}/{path}" if path else s.repo_url,
                server_name=notebook.server,
                git_host=self._git_host,
            ),
            resources=renku.resources(s.cpu_limit, f"{s.memory_limit // 2**20}M", None),
            volume=None,  # a fresh state at every deploy
        )


def volume_view(volume: WorkVolume, size: int | None, servers: Sequence[str]) -> Volume:
    return Volume(
        name=volume.name,
        user=volume.username,
        user_id=volume.user_id,
        namespace=volume.namespace,
        project=volume.project,
        size=size,
        node=volume.node,
        created_at=volume.created_at,
        used_at=volume.used_at,
        servers=list(servers),
    )
