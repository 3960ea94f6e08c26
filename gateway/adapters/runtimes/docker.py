"""The container runtime (RUNTIME=docker): each notebook is a plain container on one Docker
engine, with Traefik's labels on it, and an index of them fed by container events."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import aiodocker
import aiohttp

from gateway import naming
from gateway.adapters.engine import engine_call, log_lines
from gateway.adapters.runtimes.base import (
    TOKEN_VARIABLE,
    Container,
    Handover,
    Runtime,
    new_token,
    owned_labels,
    work_mounts,
    workload_labels,
)
from gateway.adapters.runtimes.index import WorkloadIndex
from gateway.errors import DockerError, NotebookFailed
from gateway.models import ContainerState, Launch

log = logging.getLogger(__name__)

# Events that can change what the index holds; exec_*, attach, top and the like cannot.
_CHANGES = frozenset(
    ("create", "start", "restart", "die", "oom", "pause", "unpause", "rename", "update", "destroy")
)


def from_inspect(info: Mapping[str, Any]) -> Container:
    state = info.get("State") or {}
    config = info.get("Config") or {}
    return Container(
        id=str(info["Id"]),
        name=str(info.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        labels=dict(config.get("Labels") or {}),
        state=ContainerState(
            status=str(state.get("Status", "")),
            running=bool(state.get("Running")) and not state.get("Restarting"),
            exit_code=int(state.get("ExitCode") or 0),
            oom_killed=bool(state.get("OOMKilled")),
            restart_count=int(info.get("RestartCount") or 0),
            error=str(state.get("Error") or ""),
        ),
    )


def from_summary(raw: Mapping[str, Any]) -> Container:
    """A list entry carries less than an inspect: no exit code, restart count or OOM flag."""
    status = str(raw.get("State", ""))
    return Container(
        id=str(raw["Id"]),
        name=(raw.get("Names") or ["/"])[0].lstrip("/"),
        image=str(raw.get("Image", "")),
        labels=dict(raw.get("Labels") or {}),
        state=ContainerState(status, status == "running", 0, False, 0, ""),
    )


async def read_container(client: aiodocker.Docker, container_id: str) -> Container | None:
    """One container, inspected; None when it is gone."""
    try:
        return from_inspect(await client.containers.container(container_id).show())
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise


class ContainerIndex(WorkloadIndex):
    name = "container-index"

    async def read(self, workload_id: str) -> Container | None:
        return await read_container(self.client, workload_id)

    async def resync(self, labels: Sequence[str] = ()) -> None:
        """Read again only what is new, renamed or changed state since the last look."""
        before = self.known_matching(labels)
        filters = json.dumps({"label": [*owned_labels(self.instance), *labels]})
        listed = await self.client.containers.list(all=True, filters=filters)
        present = set()
        for entry in listed:
            summary = from_summary(entry._container)
            present.add(summary.id)
            known = self.get(summary.id)
            if known is None or (known.name, known.state.status) != (
                summary.name,
                summary.state.status,
            ):
                await self.refresh(summary.id)
        self.keep_only(present, among=before)

    def event_filters(self) -> dict[str, list[str]]:
        return {"type": ["container"], "label": owned_labels(self.instance)}

    def subject(self, event: Mapping[str, Any]) -> tuple[str, bool] | None:
        action = str(event.get("Action") or event.get("status") or "")
        container_id = str((event.get("Actor") or {}).get("ID") or event.get("id") or "")
        if not container_id or action not in _CHANGES:
            return None
        return container_id, action == "destroy"


class ContainerRuntime(Runtime):
    index: ContainerIndex | None

    def __init__(
        self, client: aiodocker.Docker, instance: str, index: ContainerIndex | None = None
    ) -> None:
        super().__init__(client, instance, index)

    @engine_call("checking the network")
    async def ensure_network(self, name: str) -> None:
        try:
            await self.client.networks.get(name)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise DockerError(f"cannot inspect network {name}: {exc.message}") from None
            await self.create_network(name, Driver="bridge")

    @engine_call("listing containers")
    async def containers(self) -> list[Container]:
        """From the index while it follows the engine."""
        if self.index is not None and self.index.live:
            return self.index.containers()
        filters = json.dumps({"label": owned_labels(self.instance)})
        try:
            listed = await self.client.containers.list(all=True, filters=filters)
        except aiodocker.DockerError as exc:
            raise DockerError(f"cannot list containers: {exc.message}") from None
        return [from_summary(c._container) for c in listed]

    async def start(self, launch: Launch, replaces: Sequence[str] = ()) -> Handover:
        """A new version is created beside the old ones under a passing name; they are
        stopped just before it starts. Stopping them first keeps the proxy from sending
        requests to an address that has just gone (they would wait for a connection that
        never comes), and leaves the processor to the new Jupyter. If it cannot start, those
        that were running start again and serve on."""
        name = launch.name
        create_as = naming.fit(f"{name}-next-{secrets.token_hex(3)}") if replaces else name
        container_id = await self._create(launch, create_as)
        halted = tuple([old for old in replaces if await self._halt(old)])
        handover = Handover(container_id, name, tuple(replaces), halted)
        try:
            await self._start_created(launch, container_id)
        except NotebookFailed:
            await self._resume(handover.halted)
            raise
        return handover

    async def complete(self, handover: Handover) -> None:
        for old in handover.replaces:
            await self.remove(old, graceful=False)
        if handover.replaces:
            await self._rename(handover.id, handover.name)

    async def revert(self, handover: Handover) -> None:
        await self.remove(handover.id, graceful=False)
        await self._resume(handover.halted)

    @engine_call("creating a container")
    async def _create(self, launch: Launch, create_as: str) -> str:
        limits = launch.limits
        token = new_token()
        config: dict[str, Any] = {
            "Image": launch.image,
            **({"Cmd": launch.command} if launch.command else {}),
            "Hostname": launch.hostname[:63],
            "User": launch.user,
            "Env": [f"{TOKEN_VARIABLE}={token}"],
            "Labels": workload_labels(launch, token),
            "ExposedPorts": {"8888/tcp": {}},
            "HostConfig": {
                "NetworkMode": launch.network,
                "RestartPolicy": {"Name": "unless-stopped"},
                "Memory": limits.memory,
                "MemorySwap": limits.memory,  # no swap beyond the memory limit
                "NanoCpus": int(limits.cpus * 1e9),
                "PidsLimit": limits.pids,
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges:true"],
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
                **({"Mounts": work_mounts(launch)} if launch.volume else {}),
            },
        }
        try:
            container = await self.client.containers.create(config, name=create_as)
        except aiodocker.DockerError as exc:
            raise NotebookFailed(
                "start_failed", f"cannot create container {launch.name}: {exc.message}"
            ) from None
        return str(container.id)

    @engine_call("starting a container")
    async def _start_created(self, launch: Launch, container_id: str) -> None:
        try:
            await self.client.containers.container(container_id).start()
        except aiodocker.DockerError as exc:
            await self.remove(container_id)
            raise NotebookFailed(
                "start_failed", f"cannot start container {launch.name}: {exc.message}"
            ) from None
        await self._reread(container_id)

    @engine_call("stopping a container")
    async def _halt(self, container_id: str) -> bool:
        """Stop an old version at once (it is replaced, what it holds is discarded); True if
        it was running."""
        found = await self._reread(container_id)
        if found is None or not found.state.running:
            return False
        with contextlib.suppress(aiodocker.DockerError):  # gone or stopped meanwhile
            await self.client.containers.container(container_id).stop(t=0)
        return True

    async def _resume(self, container_ids: Sequence[str]) -> None:
        """Start old versions again after their successor failed."""
        for container_id in container_ids:
            try:
                await self.client.containers.container(container_id).start()
            except aiodocker.DockerError as exc:
                log.warning("cannot start %s again: %s", container_id[:12], exc.message)
            with contextlib.suppress(DockerError):
                await self._reread(container_id)

    @engine_call("renaming a container")
    async def _rename(self, container_id: str, name: str) -> None:
        try:
            await self.client.containers.container(container_id).rename(name)
        except aiodocker.DockerError as exc:
            raise NotebookFailed(
                "start_failed",
                f"cannot rename container {container_id[:12]} to {name}: {exc.message}",
            ) from None
        await self._reread(container_id)

    @engine_call("inspecting a container")
    async def state(self, container_id: str) -> ContainerState | None:
        if self.index is not None and self.index.live:
            known = self.index.get(container_id)
            if known is not None:
                return known.state
        found = await self._reread(container_id)
        return found.state if found else None

    async def _reread(self, container_id: str) -> Container | None:
        """Inspect one container, and let the index know what the gateway itself changed
        before the engine's event arrives."""
        try:
            if self.index is not None:
                return await self.index.refresh(container_id)
            return await read_container(self.client, container_id)
        except aiodocker.DockerError as exc:
            raise DockerError(
                f"cannot inspect container {container_id[:12]}: {exc.message}"
            ) from None

    async def logs_tail(self, container_id: str, lines: int | None = 30) -> list[str]:
        try:
            chunks = await self.client.containers.container(container_id).log(
                stdout=True, stderr=True, tail="all" if lines is None else lines
            )
        except (aiodocker.DockerError, aiohttp.ClientError, OSError):
            return []  # only ever used to explain another failure
        found = [line for chunk in chunks for line in log_lines(chunk)]
        return found if lines is None else found[-lines:]

    @engine_call("stopping a container")
    async def stop(self, container_id: str) -> None:
        try:
            await self.client.containers.container(container_id).stop(t=10)
        except aiodocker.DockerError as exc:
            if exc.status not in (304, 404):
                raise DockerError(
                    f"cannot stop container {container_id[:12]}: {exc.message}"
                ) from None
        await self._reread(container_id)

    @engine_call("removing a container")
    async def remove(self, container_id: str, graceful: bool = True) -> bool:
        """Stopping first also avoids racing the engine's own restart of the container."""
        container = self.client.containers.container(container_id)
        if graceful:
            # 304 (not running), 404 and the errors of dead containers: the delete decides.
            with contextlib.suppress(aiodocker.DockerError):
                await container.stop(t=10)
        try:
            await container.delete(force=True, v=True)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                return await self._set_aside(container_id, exc.message)
        if self.index is not None:
            self.index.forget(container_id)
        return True

    async def _set_aside(self, container_id: str, reason: str) -> bool:
        """A dead container whose file system the engine cannot release (a known overlay2
        problem after engine restarts) keeps its name. Rename it so the name is free; it stays
        labelled, so later reconcile passes try to remove it again."""
        container = self.client.containers.container(container_id)
        try:
            info = await container.show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return True
            raise DockerError(f"cannot remove container {container_id[:12]}: {reason}") from None
        state = info.get("State") or {}
        if not (state.get("Dead") or state.get("Status") in ("dead", "removing")):
            raise DockerError(f"cannot remove container {container_id[:12]}: {reason}")
        name = str(info.get("Name", "")).lstrip("/")
        if name and "-dead-" not in name:
            with contextlib.suppress(aiodocker.DockerError):
                await container.rename(naming.fit(f"{name}-dead-{container_id[:12]}"))
                await self._reread(container_id)
        log.warning("container %s is dead and cannot be removed yet: %s", container_id[:12], reason)
        return False
