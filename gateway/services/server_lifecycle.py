"""Users' servers in the background: launching one (fetch the project with its user's token,
supply its image, roll it out), stopping one, and bringing every running server to what the
current settings make it, after a restart and at every reconcile pass.

Launches, renewals and stops run as tasks, one at a time per server; the record says how far
a launch got, the container how the server is doing now.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from gateway.adapters.git import ProjectClones
from gateway.adapters.images import DockerEngine
from gateway.adapters.runtimes.base import Handover, Runtime
from gateway.adapters.store import Store
from gateway.errors import Conflict, GatewayError, NotebookFailed
from gateway.models import BuildLimits, DesiredServer, ProgressEvent, RunningServer
from gateway.publish import discovery
from gateway.publish.desired import desired_servers, server_image, server_launch
from gateway.publish.plan import Deploy, make_plan
from gateway.records import ServerRecord, ServerState, WorkVolume, now
from gateway.servers.policy import in_words
from gateway.services.images import ImageSupply
from gateway.services.rollout import Rollout
from gateway.settings import ServerSettings

log = logging.getLogger(__name__)

LAUNCH_LOG = 500  # lines of launch output kept per server, for GET /logs before a container exists


class ServerLifecycle:
    def __init__(
        self,
        settings: ServerSettings,
        docker: DockerEngine,
        runtime: Runtime,
        clones: ProjectClones,
        images: ImageSupply,
        rollout: Rollout,
        store: Store,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.runtime = runtime
        self.clones = clones
        self.images = images
        self.rollout = rollout
        self.store = store
        self.limits = discovery.ContextLimits(
            settings.max_file_size, settings.max_context_size, settings.max_context_files
        )
        self.build_limits = BuildLimits(
            settings.build_memory_limit,
            settings.build_cpu_limit,
            settings.build_pids_limit,
            settings.server_build_timeout,  # users' repositories get less time
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._launch_logs: dict[str, deque[str]] = {}

    # -- what the API asks for ------------------------------------------------------------

    def launch(self, record: ServerRecord, token: str, clone_url: str) -> None:
        self._run(record.name, self._launch(record, token, clone_url))

    def busy(self, name: str) -> bool:
        """A launch, renewal or stop of the server is under way."""
        return name in self._tasks or f"stop:{name}" in self._tasks

    async def stopped(self, name: str) -> None:
        """Once a stop under way has finished (at once without one)."""
        stopping = self._tasks.get(f"stop:{name}")
        if stopping is not None:
            await asyncio.shield(stopping)

    def stop(self, name: str, forced: bool, volume: str = "") -> None:
        """A launch under way is cancelled; the containers go, then the record, then the
        work area `volume` if given."""
        launch = self._tasks.pop(name, None)
        if launch is not None:
            launch.cancel()
        self._run(f"stop:{name}", self._stop(name, forced, volume))

    def launch_log(self, name: str) -> list[str]:
        return list(self._launch_logs.get(name, ()))

    async def containers_of(self, name: str) -> list[RunningServer]:
        return [c for c in await self.runtime.list_servers() if c.server == name]

    async def remove_containers(self, name: str, forced: bool) -> None:
        for container in await self.containers_of(name):
            await self.runtime.remove(container.id, graceful=not forced)

    async def volume_unused(self, volume: str, but: str = "") -> None:
        users = [r.name for r in await self.store.servers() if r.volume == volume and r.name != but]
        if users:
            raise Conflict(
                f"work area {volume} is used by server {users[0]}; stop it first",
                detail={"servers": users},
            )

    async def remove_volume(self, volume: str) -> None:
        """The engine refuses while a container it just stopped still holds the volume: a
        few tries, then the record stays, for an admin to remove it later."""
        for attempt in range(10):
            if await self.runtime.remove_volume(volume):
                await self.store.delete_volume(volume)
                log.info("removed work area %s", volume)
                return
            await asyncio.sleep(0.5 * (attempt + 1))
        raise Conflict(f"work area {volume} is still in use by a container")

    # -- after a restart, and at every reconcile pass -------------------------------------

    async def recover(self) -> None:
        """After a restart: launches that were cut off cannot resume (the user's token is gone
        with the request), stops that were cut off finish now."""
        containers = {c.server: c for c in await self.runtime.list_servers()}
        for record in await self.store.servers():
            container = containers.get(record.name)
            if record.state is ServerState.STOPPING:
                await self._stop(record.name, forced=True)
            elif record.state is ServerState.STARTING:
                if container is not None and container.running:
                    await self.store.set_server_state(record.name, ServerState.RUNNING)
                else:
                    await self.remove_containers(record.name, forced=True)
                    await self.store.set_server_state(
                        record.name, ServerState.FAILED,
                        "the gateway restarted while this server was starting; start it again",
                    )  # fmt: skip

    async def reconcile(self) -> None:
        """The servers' plan: containers of servers nobody asked for go; records of servers
        whose container vanished say so; running servers started under other settings, or by
        an earlier version of the gateway, are started again as the current ones would be.
        It starts from the engine's own list, not from events so far. A server whose launch,
        renewal or stop is under way is left to it."""
        await self.runtime.resync()
        records = {r.name: r for r in await self.store.servers()}
        containers = await self.runtime.list_servers()
        present = {c.server for c in containers}
        for record in records.values():
            if record.state is ServerState.RUNNING and record.name not in present:
                await self.store.set_server_state(
                    record.name,
                    ServerState.FAILED,
                    "the server's container is gone; start it again",
                )
        # Only what the plan may touch: servers recorded running, and containers of none.
        settled = [c for c in containers if not self.busy(c.server)]
        actual = [
            c
            for c in settled
            if c.server not in records or records[c.server].state is ServerState.RUNNING
        ]
        nodes = {v.name: v.node for v in await self.store.volumes()}
        desired = desired_servers(records.values(), actual, nodes, self.settings.workloads)
        plan = make_plan(desired, actual, restart_stopped=False)
        for gone in plan.remove:
            if gone.server not in records:
                log.info("removing the container of unknown server %s", gone.server)
            await self.runtime.remove(gone.id, graceful=gone.server not in records)
        renewals = [
            self._run(item.desired.name, self._renew(records[item.desired.name], item))
            for item in plan.deploy
        ]
        await asyncio.gather(*renewals, return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the tasks ------------------------------------------------------------------------

    def _run(self, key: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks[key] = task
        task.add_done_callback(_forget(self._tasks, key, task))
        return task

    async def _renew(
        self, record: ServerRecord, item: Deploy[DesiredServer, RunningServer]
    ) -> None:
        """One hand-over to a container shaped as the current settings make it, from the
        image the server runs. Files changed in the old container do not come along; if the
        new one fails, the old one serves on (see Deploy.may_fall_back)."""
        name = record.name
        log.info("restarting server %s with the gateway's current settings", name)
        await self.store.set_server_state(
            name,
            ServerState.STARTING,
            "restarting with the gateway's current settings",
            step="answering",
        )
        try:
            rolled = await self.rollout.roll(
                item.desired.launch, "user", item.replaced_ids, fallback=item.may_fall_back
            )
            if rolled.failure is None:
                await self.store.set_server_state(name, ServerState.RUNNING)
            elif rolled.reverted:
                await self.store.set_server_state(name, ServerState.RUNNING)
                log.warning("server %s could not be restarted: %s", name, rolled.failure.message)
            else:
                await self.remove_containers(name, forced=True)
                await self._fail(name, in_words(rolled.failure, record))
        except NotebookFailed as failure:
            await self._fail(name, in_words(failure, record))
        except GatewayError as exc:
            await self._fail(name, exc.message)

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
            repo = await self.clones.fetch(clone_url, record.branch, token)
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
                snapshot,
                self.settings.workloads,
                base,
                base_identity,
                record.namespace,
                record.project,
            )
            await step("building", "building the image")
            await self.images.check_registry(emit)
            mtime = await repo.commit_time(record.commit_sha)
            await self.images.ensure(spec, repo, mtime, self.build_limits, emit)
            if self.runtime.pulls_from_registry:  # any node may start it
                await step("pushing", "pushing the image to the registry")
                await self.images.push(spec, emit)
            await step("starting", "starting Jupyter")
            node = await self._use_volume(record)
            launch = server_launch(record, spec.image, self.settings.workloads, spec.labels, node)
            # The same comparison as every reconcile pass: what runs of this server (nothing,
            # unless a failed attempt left something) against what is wanted.
            plan = make_plan([DesiredServer(name, launch)], await self.containers_of(name))
            for gone in plan.remove:
                await self.runtime.remove(gone.id, graceful=False)

            async def started(handover: Handover) -> None:
                # Its work area stays where the scheduler put the server's first task.
                where = ""
                if record.volume and not node:
                    where = await self.runtime.keep_on_its_node(handover.id)
                if where:
                    await self.store.set_volume_node(record.volume, where)
                await step("answering", "waiting for Jupyter to answer")

            for item in plan.deploy:  # none when it runs as wanted already
                rolled = await self.rollout.roll(launch, "user", item.replaced_ids, started=started)
                if rolled.failure is not None:
                    raise rolled.failure
            lines.append(f"answering at {record.url}")
            await self.store.set_server_state(name, ServerState.RUNNING)
            if not self.runtime.pulls_from_registry:
                try:  # the registry's copy: the server runs on without it
                    await self.images.push(spec, emit)
                except (NotebookFailed, GatewayError) as push_failure:
                    lines.append(f"warning: {push_failure.message}")
        except asyncio.CancelledError:
            raise
        except NotebookFailed as failure:
            lines.extend(failure.log)
            await self._fail(name, in_words(failure, record))
        except GatewayError as exc:
            await self._fail(name, exc.message)
        except Exception:
            log.exception("starting server %s failed", name)
            await self._fail(name, "an internal error stopped the start; see the gateway's log")

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
        await self.remove_containers(name, forced)
        await self.store.delete_server(name)
        self._launch_logs.pop(name, None)
        if volume:
            await self.remove_volume(volume)


def _forget(
    tasks: dict[str, asyncio.Task[None]], key: str, task: asyncio.Task[None]
) -> Callable[[asyncio.Task[None]], None]:
    """A finished task leaves the registry, unless another has taken its key since."""

    def done(_: asyncio.Task[None]) -> None:
        if tasks.get(key) is task:
            del tasks[key]

    return done
