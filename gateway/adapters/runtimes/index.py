"""The gateway's workloads kept in memory, fed by the engine's event stream: what the runtimes
read instead of asking Docker for lists."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiodocker
from aiodocker.events import DockerEvents

from gateway import naming
from gateway.adapters.runtimes.base import ENGINE_ERRORS, Container

log = logging.getLogger(__name__)

_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)


class WorkloadIndex(abc.ABC):
    """The gateway's notebooks, kept in memory: fed by the engine's event stream and
    resynchronised periodically, so reading them never waits on a Docker list call. While the
    stream is down the index is not live and readers ask the engine directly."""

    name = "index"

    def __init__(self, client: aiodocker.Docker, instance: str, resync_interval: float) -> None:
        self.client = client
        self.instance = instance
        self.resync_interval = resync_interval
        self.live = False
        self._known: dict[str, Container] = {}
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._failures = 0
        self._later: set[asyncio.Task[None]] = set()

    # -- what a runtime tells it ----------------------------------------------------------

    @abc.abstractmethod
    async def read(self, workload_id: str) -> Container | None:
        """Read one from the engine (None when it is gone), whoever owns it."""

    @abc.abstractmethod
    async def resync(self, labels: Sequence[str] = ()) -> None:
        """Compare with the engine's list: everything of this gateway, or only what also
        carries every `key=value` of `labels` (see known_matching, keep_only and put)."""

    @abc.abstractmethod
    def event_filters(self) -> dict[str, list[str]]:
        """The engine events that can change what the index holds."""

    @abc.abstractmethod
    def subject(self, event: Mapping[str, Any]) -> tuple[str, bool] | None:
        """The id an event is about, and whether it says that one is gone."""

    # -- reading --------------------------------------------------------------------------

    def containers(self) -> list[Container]:
        return list(self._known.values())

    def get(self, workload_id: str) -> Container | None:
        return self._known.get(workload_id)

    # -- keeping it true ------------------------------------------------------------------

    async def start(self, wait: float = 10.0) -> None:
        """Follow the engine from now on; wait (a while) for the first full picture."""
        self._task = asyncio.create_task(self._follow(), name=self.name)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._synced.wait()

    async def close(self) -> None:
        self.live = False
        for task in [self._task, *self._later]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def refresh(self, workload_id: str) -> Container | None:
        """Read one again (the gateway's own changes show at once)."""
        found = await self.read(workload_id)
        if found is None:
            self._known.pop(workload_id, None)
        elif self.owns(found):
            self._known[found.id] = found
        return found

    def owns(self, container: Container) -> bool:
        labels = container.labels
        return labels.get(naming.LABEL_INSTANCE) == self.instance and (
            naming.LABEL_CONTAINER in labels
        )

    def refresh_later(self, workload_id: str, delay: float) -> None:
        """Read one again after a while, for changes the engine reports without an event."""

        async def later() -> None:
            await asyncio.sleep(delay)
            with contextlib.suppress(*ENGINE_ERRORS):
                await self.refresh(workload_id)

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def forget(self, workload_id: str) -> None:
        self._known.pop(workload_id, None)

    def known_matching(self, labels: Sequence[str]) -> set[str]:
        """The ids it knows that carry every `key=value` of `labels`."""
        wanted = [label.partition("=") for label in labels]
        return {
            workload_id
            for workload_id, known in self._known.items()
            if all(known.labels.get(key) == value for key, _, value in wanted)
        }

    def keep_only(self, present: set[str], among: set[str]) -> None:
        """Forget those of `among` (what it knew when the engine's list was asked for) that
        the list did not hold. What arrived since, by an event or the gateway's own change,
        stays: it is newer than the list."""
        for gone in among - present:
            self._known.pop(gone, None)

    def put(self, container: Container) -> None:
        self._known[container.id] = container

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
        # Replaying from a moment ago covers changes between the list below and the stream.
        since = str(int(time.time()) - 2)
        filters = json.dumps(self.event_filters())
        stream = asyncio.create_task(events.run(since=since, filters=filters))
        try:
            await self.resync()
            self.live, self._failures = True, 0
            self._synced.set()
            while True:
                try:
                    # Not wait_for: on Python 3.11 it loses a cancellation that comes as an
                    # event arrives, and closing the gateway would wait for ever.
                    async with asyncio.timeout(self.resync_interval):
                        event = await subscriber.get()
                except TimeoutError:
                    await self.resync()
                    continue
                if event is None:  # the stream ended
                    break
                await self.apply(event)
        finally:
            self.live = False
            await events.stop()  # type: ignore[no-untyped-call]
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError, *ENGINE_ERRORS):
                await stream
        if not stream.cancelled() and (error := stream.exception()):
            raise error

    async def apply(self, event: Mapping[str, Any]) -> str | None:
        """Take in one event; the id it was about, if it is one of ours to follow."""
        subject = self.subject(event)
        if subject is None:
            return None
        workload_id, gone = subject
        if gone:
            self._known.pop(workload_id, None)
        else:
            await self.refresh(workload_id)
        return workload_id
