"""The gateway's containers, kept in memory: fed by the engine's event stream and resynchronised
periodically, so reading them never waits on a Docker list call. While the stream is down the
index is not live and readers ask the engine directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiodocker
import aiohttp
from aiodocker.events import DockerEvents

from gateway import naming

log = logging.getLogger(__name__)

# Events that can change what the index holds; exec_*, attach, top and the like cannot.
_CHANGES = frozenset(
    ("create", "start", "restart", "die", "oom", "pause", "unpause", "rename", "update", "destroy")
)
_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)
_STREAM_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError)


@dataclass(frozen=True)
class ContainerState:
    status: str  # created, running, restarting, exited, dead, ...
    running: bool
    exit_code: int
    oom_killed: bool
    restart_count: int
    error: str

    def describe(self) -> str:
        if self.status in ("exited", "dead"):
            return f"{self.status} with code {self.exit_code}"
        return self.status


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str  # the reference it was created from
    labels: Mapping[str, str]
    state: ContainerState


def owned_labels(instance: str) -> list[str]:
    """The label filter that selects the containers of one gateway."""
    return [f"{naming.LABEL_INSTANCE}={instance}", naming.LABEL_CONTAINER]


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


class ContainerIndex:
    def __init__(self, client: aiodocker.Docker, instance: str, resync_interval: float) -> None:
        self.client = client
        self.instance = instance
        self.resync_interval = resync_interval
        self.live = False
        self._containers: dict[str, Container] = {}
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._failures = 0

    # -- reading --------------------------------------------------------------------------

    def containers(self) -> list[Container]:
        return list(self._containers.values())

    def get(self, container_id: str) -> Container | None:
        return self._containers.get(container_id)

    # -- keeping it true ------------------------------------------------------------------

    async def start(self, wait: float = 10.0) -> None:
        """Follow the engine from now on; wait (a while) for the first full picture."""
        self._task = asyncio.create_task(self._follow(), name="container-index")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), wait)

    async def close(self) -> None:
        self.live = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self, container_id: str) -> Container | None:
        """Read one container again (the gateway's own changes show at once)."""
        try:
            info = await self.client.containers.container(container_id).show()
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise
            self._containers.pop(container_id, None)
            return None
        container = from_inspect(info)
        labels = container.labels
        if labels.get(naming.LABEL_INSTANCE) == self.instance and naming.LABEL_CONTAINER in labels:
            self._containers[container.id] = container
        return container

    def forget(self, container_id: str) -> None:
        self._containers.pop(container_id, None)

    async def resync(self) -> None:
        """Compare with the engine's list; read again only what is new or changed state."""
        filters = json.dumps({"label": owned_labels(self.instance)})
        listed = await self.client.containers.list(all=True, filters=filters)
        present = set()
        for entry in listed:
            summary = from_summary(entry._container)
            present.add(summary.id)
            known = self._containers.get(summary.id)
            if known is None or known.state.status != summary.state.status:
                await self.refresh(summary.id)
        for gone in set(self._containers) - present:
            self._containers.pop(gone, None)

    async def _follow(self) -> None:
        while True:
            try:
                await self._follow_once()  # ends with the stream (an engine restart)
            except Exception as exc:  # whatever broke, start over from a resync
                if self._failures == 0:
                    log.warning("lost the Docker event stream (%s); asking the engine", exc)
            await asyncio.sleep(_RETRY_DELAYS[min(self._failures, len(_RETRY_DELAYS) - 1)])
            self._failures += 1

    async def _follow_once(self) -> None:
        events = DockerEvents(self.client)  # type: ignore[no-untyped-call]
        subscriber = events.subscribe(create_task=False)  # type: ignore[no-untyped-call]
        filters = {"type": ["container"], "label": owned_labels(self.instance)}
        # Replaying from a moment ago covers changes between the list below and the stream.
        since = str(int(time.time()) - 2)
        stream = asyncio.create_task(events.run(since=since, filters=json.dumps(filters)))
        try:
            await self.resync()
            self.live, self._failures = True, 0
            self._synced.set()
            while True:
                try:
                    event = await asyncio.wait_for(subscriber.get(), self.resync_interval)
                except TimeoutError:
                    await self.resync()
                    continue
                if event is None:  # the stream ended
                    break
                await self._apply(event)
        finally:
            self.live = False
            await events.stop()  # type: ignore[no-untyped-call]
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_STREAM_ERRORS):
                await stream
        if not stream.cancelled() and (error := stream.exception()):
            raise error

    async def _apply(self, event: Mapping[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        container_id = str((event.get("Actor") or {}).get("ID") or event.get("id") or "")
        if not container_id or action not in _CHANGES:
            return
        if action == "destroy":
            self._containers.pop(container_id, None)
        else:
            await self.refresh(container_id)
