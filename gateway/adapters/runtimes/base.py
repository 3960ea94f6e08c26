"""Where notebooks run: the runtime adapter's contract, and what the rest of the gateway reads
back from it. Two runtimes keep it: plain containers on one engine (docker.py) and Swarm
services across a cluster (swarm.py), each reading what runs from its index (index.py).
Nothing outside the runtimes knows which one runs."""

from __future__ import annotations

import abc
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiodocker
import aiohttp

from gateway import naming
from gateway.errors import DockerError
from gateway.models import ContainerState, Launch, RunningNotebook, RunningServer, Usage
from gateway.publish.dockerfile import WORKDIR
from gateway.traefik import token_labels

if TYPE_CHECKING:
    from gateway.adapters.runtimes.index import WorkloadIndex

log = logging.getLogger(__name__)

VOLUME_SIZES_TTL = 60.0
ENGINE_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError)


@dataclass(frozen=True)
class Container:
    """One notebook's running unit: a container, or a Swarm service with its one task."""

    id: str
    name: str
    image: str  # the reference it was created from
    labels: Mapping[str, str]
    state: ContainerState


@dataclass(frozen=True)
class Handover:
    """A new version started in place of the previous ones, which stay (stopped) until it
    answers: then they go; if it fails, they serve again."""

    id: str
    name: str  # the notebook's, which the new version takes once it answers
    replaces: tuple[str, ...] = ()
    halted: tuple[str, ...] = ()  # those of them that were running, and run again on revert


TOKEN_VARIABLE = "JUPYTER_TOKEN"  # read by the start script (and by Jupyter itself)


def new_token() -> str:
    """A container's Jupyter token: random, drawn for every container a runtime starts, and
    only ever in that container's environment and in its route's middleware."""
    return secrets.token_urlsafe(32)


def workload_labels(launch: Launch, token: str) -> dict[str, str]:
    """What a runtime puts on a notebook's container (or service): the launch's labels, the
    name it is known by, its shape, and the middleware that hands Jupyter its token."""
    labels = {
        **launch.labels,
        naming.LABEL_CONTAINER: launch.name,
        naming.LABEL_SHAPE: launch.shape,
    }
    if launch.router:
        labels.update(token_labels(launch.router, token))
    return labels


def work_mounts(launch: Launch) -> list[dict[str, Any]]:
    """The work area, where the image's working directory is. A new volume is created with
    the labels, and filled with what the image has there (an empty folder the notebook user
    owns; start-notebook.py puts the commit in)."""
    return [
        {
            "Type": "volume",
            "Source": launch.volume,
            "Target": WORKDIR,
            "VolumeOptions": {"Labels": dict(launch.volume_labels)},
        }
    ]


def owned_labels(instance: str) -> list[str]:
    """The label filter that selects the containers (or services) of one gateway."""
    return [f"{naming.LABEL_INSTANCE}={instance}", naming.LABEL_CONTAINER]


class Runtime(abc.ABC):
    """Starts, watches and removes the gateway's notebooks. Ids are the runtime's own (a
    container's or a service's); names are the gateway's."""

    # True when it runs images from the registry (on any node) rather than from the engine
    # that built them: the registry must then have an image before it starts.
    pulls_from_registry = False

    def __init__(
        self, client: aiodocker.Docker, instance: str, index: WorkloadIndex | None = None
    ) -> None:
        self.client = client
        self.instance = instance
        self.index = index
        self._cpu_samples: dict[str, tuple[int, int]] = {}  # container -> (its, the host's)
        self._volume_sizes: tuple[float, dict[str, int]] = (-VOLUME_SIZES_TTL, {})

    async def resync(self, project: str | None = None) -> None:
        """Read what runs from the engine now, into the index: everything, or one project's
        published notebooks. A decision to change what runs (a reconcile pass, a deploy's
        plan) must not rest on events that may not have arrived yet; everything else reads
        the index as it is."""
        if self.index is None:
            return  # every read asks the engine
        labels: tuple[str, ...] = ()
        if project is not None:
            labels = (
                f"{naming.LABEL_KIND}={naming.KIND_PUBLISHED}",
                f"{naming.LABEL_PROJECT}={project}",
            )
        try:
            await self.index.resync(labels)
        except ENGINE_ERRORS as exc:
            raise DockerError(f"cannot read what runs from the Docker engine: {exc}") from None

    @abc.abstractmethod
    async def ensure_network(self, name: str) -> None:
        """The network notebooks and Traefik share; created when missing."""

    @abc.abstractmethod
    async def containers(self) -> list[Container]:
        """Every notebook of this gateway."""

    @abc.abstractmethod
    async def start(self, launch: Launch, replaces: Sequence[str] = ()) -> Handover:
        """Start the notebook in place of `replaces` (the ids of its previous versions): they
        stop serving, and stay until the handover is completed or reverted."""

    @abc.abstractmethod
    async def complete(self, handover: Handover) -> None:
        """The new version answers: the previous ones go, and it takes the notebook's name."""

    @abc.abstractmethod
    async def revert(self, handover: Handover) -> None:
        """The new version failed: it goes, and the previous ones serve again."""

    @abc.abstractmethod
    async def state(self, container_id: str) -> ContainerState | None:
        """How it is doing now; None once it is gone."""

    @abc.abstractmethod
    async def logs_tail(self, container_id: str, lines: int | None = 30) -> list[str]:
        """Its last log lines (all of them for None); empty when they cannot be read."""

    async def usage(self, container_id: str) -> Usage | None:
        """What it uses now, as its engine counts it; None when that cannot be read."""
        return await self._engine_usage(container_id)

    async def keep_on_its_node(self, container_id: str) -> str:
        """Swarm: the node the scheduler gave it, which it keeps from now on (a work area is
        a volume on that node); "" on a single engine, or when no node takes it."""
        return ""

    async def volume_sizes(self) -> dict[str, int]:
        """Bytes used by each of this engine's volumes (the engine's own disk-usage count,
        which walks them: at most once a minute). Empty when it cannot be read."""
        taken, sizes = self._volume_sizes
        if time.monotonic() - taken < VOLUME_SIZES_TTL:
            return sizes
        try:
            usage = await self.client._query_json("system/df")
        except ENGINE_ERRORS:
            return sizes
        sizes = {
            str(v.get("Name")): int((v.get("UsageData") or {}).get("Size", -1))
            for v in (usage or {}).get("Volumes") or []
        }
        self._volume_sizes = (time.monotonic(), {k: v for k, v in sizes.items() if v >= 0})
        return self._volume_sizes[1]

    async def remove_volume(self, name: str) -> bool:
        """Remove a volume of this engine; False while a container still uses it."""
        try:
            async with self.client._query(f"volumes/{name}", method="DELETE"):
                pass
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return True
            if exc.status == 409:
                return False
            raise DockerError(f"cannot remove volume {name}: {exc.message}") from None
        self._volume_sizes[1].pop(name, None)
        return True

    async def _engine_usage(self, container_id: str) -> Usage | None:
        """One sample of a container's stats (one-shot: no waiting for a second). Memory as
        `docker stats` shows it (without the page cache it may drop); processor use since
        the previous sample of the same container, when there was one."""
        try:
            stats = await self.client._query_json(
                f"containers/{container_id}/stats",
                params={"stream": "false", "one-shot": "true"},
            )
        except ENGINE_ERRORS:
            return None
        if not isinstance(stats, dict):
            return None  # a container on its way out answers with no body
        memory_stats = stats.get("memory_stats") or {}
        memory = memory_stats.get("usage")
        if memory is not None:
            memory -= int((memory_stats.get("stats") or {}).get("inactive_file") or 0)
        cpu = stats.get("cpu_stats") or {}
        total = (cpu.get("cpu_usage") or {}).get("total_usage")
        system = cpu.get("system_cpu_usage")
        cores = None
        if total is not None and system is not None:
            before = self._cpu_samples.get(container_id)
            if before is not None and system > before[1]:
                share = (total - before[0]) / (system - before[1])
                cores = max(0.0, share * int(cpu.get("online_cpus") or 1))
            if len(self._cpu_samples) > 4096:
                self._cpu_samples.clear()
            self._cpu_samples[container_id] = (int(total), int(system))
        return Usage(cores, None if memory is None else max(0, int(memory)))

    @abc.abstractmethod
    async def stop(self, container_id: str) -> None:
        """Stop it (and keep it from being restarted), leaving it in place for its logs."""

    @abc.abstractmethod
    async def remove(self, container_id: str, graceful: bool = True) -> bool:
        """Remove it, letting Jupyter shut down first unless graceful is False. False when
        the engine cannot remove it now (a later reconcile tries again)."""

    async def create_network(self, name: str, **options: Any) -> None:
        """Create the network, labelled as this gateway's; one created meanwhile will do."""
        try:
            await self.client.networks.create(
                {"Name": name, **options, "Labels": {naming.LABEL_INSTANCE: self.instance}}
            )
        except aiodocker.DockerError as exc:
            if exc.status != 409:
                raise DockerError(f"cannot create network {name}: {exc.message}") from None

    async def list_servers(self) -> list[RunningServer]:
        found = []
        for container in await self.containers():
            labels = container.labels
            if labels.get(naming.LABEL_KIND) != naming.KIND_USER:
                continue
            user_id = labels.get(naming.LABEL_USER_ID, "")
            found.append(
                RunningServer(
                    id=container.id,
                    name=container.name,
                    server=labels.get(naming.LABEL_SERVER, ""),
                    image=container.image,
                    user_id=int(user_id) if user_id.isdigit() else -1,
                    state=container.state.status,
                    shape=labels.get(naming.LABEL_SHAPE, ""),
                )
            )
        return found

    async def list_notebooks(self, project: str | None = None) -> list[RunningNotebook]:
        found = []
        for container in await self.containers():
            labels = container.labels
            if labels.get(naming.LABEL_KIND) != naming.KIND_PUBLISHED:
                continue
            if project is not None and labels.get(naming.LABEL_PROJECT) != project:
                continue
            found.append(
                RunningNotebook(
                    id=container.id,
                    name=container.name,
                    project=labels.get(naming.LABEL_PROJECT, ""),
                    path=labels.get(naming.LABEL_NOTEBOOK, ""),
                    commit=labels.get(naming.LABEL_COMMIT, ""),
                    content_hash=labels.get(naming.LABEL_CONTENT_HASH, ""),
                    image=container.image,
                    url=labels.get(naming.LABEL_URL, ""),
                    running=container.state.status == "running",
                    status=container.state.describe(),
                    server=labels.get(naming.LABEL_CONTAINER, container.name),
                    shape=labels.get(naming.LABEL_SHAPE, ""),
                )
            )
        return found
