"""The Swarm runtime (RUNTIME=swarm): each notebook is a Docker Swarm service with one replica on
an overlay network shared with Traefik, whose Swarm provider routes by the service's labels.
Swarm places it on any node, restarts it when it fails, and every node pulls its image from the
registry. A notebook's state is its service's newest task's."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import aiodocker
import aiohttp
from aiodocker.utils import compose_auth_header

from gateway import naming
from gateway.adapters.engine import engine_call, log_lines
from gateway.adapters.registry import RegistryAuth
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
from gateway.models import ContainerState, Launch, Usage

log = logging.getLogger(__name__)

# A task's states before it runs, and those it ends in (Swarm's own words).
_PENDING = frozenset(("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready"))
_FAILED = frozenset(("failed", "rejected", "complete", "orphaned"))
# Container events (on this node) that change a task's state.
_TASK_CHANGES = frozenset(("start", "die", "oom", "kill", "destroy"))
_SERVICE_ID = "com.docker.swarm.service.id"
_TASK_SETTLE = (0.5, 2.0)  # seconds after a container event
NODE_CHOICE_TIMEOUT = 30.0  # seconds for the scheduler to give a new task a node
# When tasks start to count, if not since the last update: a pin to the task's own node is an
# update that leaves the task running (keep_on_its_node).
TASKS_SINCE = f"{naming.LABEL_PREFIX}tasks-since"


def _time(text: str) -> datetime:
    """Swarm's RFC 3339 times carry nanoseconds, which Python does not parse."""
    if not text:
        return datetime.min.replace(tzinfo=UTC)
    stamp, _, fraction = text.rstrip("Z").partition(".")
    micro = (fraction + "000000")[:6]
    return datetime.fromisoformat(f"{stamp}.{micro}+00:00")


def _tasks_since(service: Mapping[str, Any]) -> str:
    """From when its tasks count: its last update or creation, unless a pin says earlier."""
    labels = (service.get("Spec") or {}).get("Labels") or {}
    return str(
        labels.get(TASKS_SINCE) or service.get("UpdatedAt") or service.get("CreatedAt") or ""
    )


def task_state(service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> ContainerState:
    """The service's state from its tasks since it was last created or updated: running once
    one runs; each failed run counts as a restart; no replica wanted means stopped."""
    spec = service.get("Spec") or {}
    replicas = int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
    since = _time(_tasks_since(service))
    current = sorted(
        (t for t in tasks if _time(str(t.get("CreatedAt", ""))) >= since),
        key=lambda t: _time(str(t.get("CreatedAt", ""))),
    )
    failed = [t for t in current if (t.get("Status") or {}).get("State") in _FAILED]
    last = (failed[-1].get("Status") or {}) if failed else {}
    exit_code = int((last.get("ContainerStatus") or {}).get("ExitCode") or 0)
    error = str(last.get("Err") or "")
    running = any(
        (t.get("Status") or {}).get("State") == "running" and t.get("DesiredState") == "running"
        for t in current
    )
    newest = (current[-1].get("Status") or {}) if current else {}
    if replicas == 0:
        status = "exited"
    elif running:
        status = "running"
    elif newest.get("State") == "pending" and newest.get("Err"):
        # The scheduler found no node for it (constraints, resources): it waits, and says why.
        status, error = "unplaced", str(newest["Err"])
    elif failed:
        status = "restarting"
    else:
        status = "created"
    return ContainerState(status, running, exit_code, False, len(failed), error)


def from_service(service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> Container:
    spec = service.get("Spec") or {}
    container_spec = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return Container(
        id=str(service["ID"]),
        name=str(spec.get("Name", "")),
        image=str(container_spec.get("Image", "")).partition("@")[0],
        labels=dict(spec.get("Labels") or {}),
        state=task_state(service, tasks),
    )


async def read_service(client: aiodocker.Docker, service_id: str) -> Container | None:
    """One service with its tasks; None when it is gone."""
    try:
        service = await client.services.inspect(service_id)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise
    tasks = await client.tasks.list(filters={"service": [str(service["ID"])]})
    return from_service(service, tasks)


async def list_services(
    client: aiodocker.Docker, instance: str, labels: Sequence[str] = ()
) -> list[Container]:
    """Every service of one gateway (that also carries `labels`), with its tasks: two calls,
    however many there are."""
    services = await client.services.list(filters={"label": [*owned_labels(instance), *labels]})
    by_service: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    if services:
        for task in await client.tasks.list():
            by_service[str(task.get("ServiceID", ""))].append(task)
    return [from_service(s, by_service[str(s["ID"])]) for s in services]


class ServiceIndex(WorkloadIndex):
    """Fed by service events (created, updated, removed) and by the events of task containers
    on this node; tasks on other nodes show at the next resync."""

    name = "service-index"

    async def read(self, workload_id: str) -> Container | None:
        return await read_service(self.client, workload_id)

    async def resync(self, labels: Sequence[str] = ()) -> None:
        before = self.known_matching(labels)
        found = await list_services(self.client, self.instance, labels)
        for service in found:
            if self.owns(service):
                self.put(service)
        self.keep_only({service.id for service in found}, among=before)

    def event_filters(self) -> dict[str, list[str]]:
        return {"type": ["service", "container"]}

    async def apply(self, event: Mapping[str, Any]) -> str | None:
        service_id = await super().apply(event)
        if service_id is not None and event.get("Type") == "container":
            # Swarm records a task's end (and starts the next) a moment after its container's
            # event, and sends no event of its own: look again once it has.
            for delay in _TASK_SETTLE:
                self.refresh_later(service_id, delay)
        return service_id

    def subject(self, event: Mapping[str, Any]) -> tuple[str, bool] | None:
        action = str(event.get("Action") or "")
        actor = event.get("Actor") or {}
        if event.get("Type") == "service":
            service_id = str(actor.get("ID") or "")
            return (service_id, action == "remove") if service_id else None
        attributes = actor.get("Attributes") or {}
        if attributes.get(naming.LABEL_INSTANCE) != self.instance or action not in _TASK_CHANGES:
            return None
        service_id = str(attributes.get(_SERVICE_ID) or "")
        return (service_id, False) if service_id else None


class SwarmRuntime(Runtime):
    pulls_from_registry = True  # a task may land on any node
    index: ServiceIndex | None

    def __init__(
        self,
        client: aiodocker.Docker,
        instance: str,
        auth: RegistryAuth | None,
        index: ServiceIndex | None = None,
    ) -> None:
        super().__init__(client, instance, index)
        self.auth = auth

    @engine_call("checking the Swarm")
    async def ensure_network(self, name: str) -> None:
        """The engine must be a Swarm manager, and the network an attachable overlay network
        (Traefik's Swarm provider and every node's tasks meet on it)."""
        try:
            await self.client.swarm.inspect()
        except aiodocker.DockerError as exc:
            raise DockerError(
                "RUNTIME=swarm, but this Docker engine is not a Swarm manager"
                f" ({exc.message}): run `docker swarm init` or point DOCKER_HOST at a manager"
            ) from None
        try:
            network = await self.client.networks.get(name)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise DockerError(f"cannot inspect network {name}: {exc.message}") from None
            await self.create_network(name, Driver="overlay", Attachable=True)
            return
        info = await network.show()
        if info.get("Driver") != "overlay" or info.get("Scope") != "swarm":
            raise DockerError(
                f"network {name} is a {info.get('Driver')} network; RUNTIME=swarm needs an"
                " attachable overlay network (remove it, and the gateway creates one)"
            )

    @engine_call("listing services")
    async def containers(self) -> list[Container]:
        if self.index is not None and self.index.live:
            return self.index.containers()
        try:
            return await list_services(self.client, self.instance)
        except aiodocker.DockerError as exc:
            raise DockerError(f"cannot list services: {exc.message}") from None

    @engine_call("starting a service")
    async def start(self, launch: Launch, replaces: Sequence[str] = ()) -> Handover:
        """A notebook keeps its service: a new version updates it (Swarm stops the old task,
        then starts the new one), and Swarm keeps the previous spec to roll back to.
        Replaced services under other names are removed."""
        spec = self._spec(launch)
        existing = await self._inspect(launch.name)
        try:
            if existing is None:
                created = await self.client._query_json(
                    "services/create", method="POST", data=json.dumps(spec),
                    headers=self._auth_header(),
                )  # fmt: skip
                service_id = str(created["ID"])
            else:
                service_id = str(existing["ID"])
                force = int(((existing.get("Spec") or {}).get("TaskTemplate") or {}).get(
                    "ForceUpdate", 0
                ))  # fmt: skip
                spec["TaskTemplate"]["ForceUpdate"] = force + 1  # restart even if unchanged
                await self._update(existing, spec)
        except aiodocker.DockerError as exc:
            raise NotebookFailed(
                "start_failed", f"cannot start service {launch.name}: {exc.message}"
            ) from None
        for old in replaces:
            if old != service_id:
                await self.remove(old)
        await self._reread(service_id)
        updated = (service_id,) if existing is not None else ()
        return Handover(service_id, launch.name, replaces=updated)

    async def complete(self, handover: Handover) -> None:
        """Nothing is left to remove: the service was updated in place."""

    @engine_call("rolling back a service")
    async def revert(self, handover: Handover) -> None:
        """The service goes back to its spec before the update (Swarm's rollback)."""
        if not handover.replaces:
            return
        service = await self._inspect(handover.id)
        if service is None:
            return
        try:
            await self._update(service, service.get("Spec") or {}, rollback=True)
        except aiodocker.DockerError as exc:
            raise DockerError(f"cannot roll back service {handover.name}: {exc.message}") from None
        await self._reread(handover.id)

    def _spec(self, launch: Launch) -> dict[str, Any]:
        # Traefik's Swarm provider reads service labels; ours go on the tasks' containers too,
        # so `docker ps` on any node tells which gateway a container belongs to.
        token = new_token()
        labels = workload_labels(launch, token)
        ours = {k: v for k, v in labels.items() if k.startswith(naming.LABEL_PREFIX)}
        limits = launch.limits
        # A work area lives on one node: its server runs there.
        constraints = [*launch.placement, *([f"node.id=={launch.node}"] if launch.node else [])]
        return {
            "Name": launch.name,
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": launch.image,
                    **({"Args": launch.command} if launch.command else {}),
                    "Hostname": launch.hostname[:63],
                    "User": launch.user,
                    "Env": [f"{TOKEN_VARIABLE}={token}"],
                    "Labels": ours,
                    "CapabilityDrop": ["ALL"],
                    **({"Mounts": work_mounts(launch)} if launch.volume else {}),
                },
                **({"Placement": {"Constraints": constraints}} if constraints else {}),
                "Resources": {
                    "Limits": {
                        "NanoCPUs": int(limits.cpus * 1e9),
                        "MemoryBytes": limits.memory,
                        "Pids": limits.pids,
                    }
                },
                "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
                "Networks": [{"Target": launch.network, "Aliases": [launch.hostname[:63]]}],
                "LogDriver": {
                    "Name": "json-file",
                    "Options": {"max-size": "10m", "max-file": "3"},
                },
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "UpdateConfig": {"Order": "stop-first", "FailureAction": "continue"},
            # Traefik sends requests to the task's own address: no virtual IP (nor IPVS).
            "EndpointSpec": {"Mode": "dnsrr"},
        }

    def _auth_header(self) -> dict[str, str] | None:
        """Swarm hands the registry credentials to the node that pulls the image."""
        if self.auth is None:
            return None
        return {"X-Registry-Auth": compose_auth_header(self.auth.header(), self.auth.server)}

    async def _inspect(self, service: str) -> Mapping[str, Any] | None:
        try:
            return await self.client.services.inspect(service)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerError(f"cannot inspect service {service}: {exc.message}") from None

    async def _update(
        self, service: Mapping[str, Any], spec: Mapping[str, Any], rollback: bool = False
    ) -> None:
        """With rollback, Swarm returns to the spec before the last update (and ignores
        `spec`)."""
        params = {"version": str((service.get("Version") or {}).get("Index"))}
        if rollback:
            params["rollback"] = "previous"
        await self.client._query_json(
            f"services/{service['ID']}/update", method="POST", data=json.dumps(spec),
            params=params, headers=self._auth_header(),
        )  # fmt: skip

    async def _respec(self, service: Mapping[str, Any], spec: Mapping[str, Any], verb: str) -> None:
        """The service under a changed spec, and the index told at once."""
        try:
            await self._update(service, spec)
        except aiodocker.DockerError as exc:
            raise DockerError(f"cannot {verb} service {service['ID']}: {exc.message}") from None
        await self._reread(str(service["ID"]))

    async def _reread(self, service_id: str) -> Container | None:
        try:
            if self.index is not None:
                return await self.index.refresh(service_id)
            return await read_service(self.client, service_id)
        except aiodocker.DockerError as exc:
            raise DockerError(f"cannot inspect service {service_id}: {exc.message}") from None

    @engine_call("inspecting a service")
    async def state(self, container_id: str) -> ContainerState | None:
        """Always read afresh: tasks on other nodes send no events here."""
        found = await self._reread(container_id)
        return found.state if found else None

    async def logs_tail(self, container_id: str, lines: int | None = 30) -> list[str]:
        tail = "all" if lines is None else str(lines)
        try:
            chunks = await cast(
                Awaitable[list[str]],
                self.client.services.logs(container_id, stdout=True, stderr=True, tail=tail),
            )
        except (aiodocker.DockerError, aiohttp.ClientError, OSError):
            return []
        found = log_lines("".join(chunks))
        return found if lines is None else found[-lines:]

    @engine_call("placing a service")
    async def keep_on_its_node(self, container_id: str) -> str:
        """Pinned to its task's node as soon as the scheduler has chosen one, before Jupyter
        answers: otherwise Swarm would move a running server whose node is drained or lost to
        another node, with an empty work area there. Swarm leaves a task whose node meets a
        new constraint running; its tasks still count from before this update."""
        filters = json.dumps({"service": [container_id], "desired-state": ["running"]})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NODE_CHOICE_TIMEOUT
        while True:
            tasks = await self.client._query_json("tasks", params={"filters": filters})
            if node := next((str(t["NodeID"]) for t in tasks if t.get("NodeID")), ""):
                break
            if loop.time() > deadline:
                return ""  # no node takes it: the readiness check says why
            await asyncio.sleep(0.2)
        service = await self._inspect(container_id)
        if service is None:
            return ""
        spec = dict(service.get("Spec") or {})
        template = dict(spec.get("TaskTemplate") or {})
        placement = dict(template.get("Placement") or {})
        placement["Constraints"] = [*placement.get("Constraints", []), f"node.id=={node}"]
        template["Placement"] = placement
        spec["TaskTemplate"] = template
        spec["Labels"] = {**(spec.get("Labels") or {}), TASKS_SINCE: _tasks_since(service)}
        await self._respec(service, spec, "place")
        return node

    async def usage(self, container_id: str) -> Usage | None:
        """The service's running task, when its container is on this node's engine."""
        filters = json.dumps(
            {"label": [f"com.docker.swarm.service.id={container_id}"], "status": ["running"]}
        )
        try:
            tasks = await self.client.containers.list(filters=filters)
        except (aiodocker.DockerError, aiohttp.ClientError, OSError):
            return None
        return await self._engine_usage(tasks[0].id) if tasks else None

    @engine_call("stopping a service")
    async def stop(self, container_id: str) -> None:
        """No replica wanted: Swarm stops the task and starts no other."""
        service = await self._inspect(container_id)
        if service is None:
            return
        spec = dict(service.get("Spec") or {})
        spec["Mode"] = {"Replicated": {"Replicas": 0}}
        await self._respec(service, spec, "stop")

    @engine_call("removing a service")
    async def remove(self, container_id: str, graceful: bool = True) -> bool:
        """Swarm stops the task (with the grace period Jupyter needs) and removes it."""
        try:
            await self.client.services.delete(container_id)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise DockerError(f"cannot remove service {container_id}: {exc.message}") from None
        if self.index is not None:
            self.index.forget(container_id)
        return True
