"""The one rollout: every workload, a published notebook or a user's server, starts here, in
place of what it replaces, and counts as running only once it answers through Traefik.

Answering, it takes over for good. Failing, it gives way to what it replaces (`fallback`), or,
without a fallback, it is stopped and left for its logs while what it replaces goes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.adapters.probe import FIRST_PATIENCE, MOST_PATIENCE, TraefikProbe
from gateway.adapters.runtimes.base import Handover, Runtime
from gateway.errors import NotebookFailed
from gateway.metrics import Metrics
from gateway.models import Launch
from gateway.settings import RolloutSettings

LOG_TAIL = 30
# Longer than the Swarm provider's poll (traefik-config's swarm_refresh, 1 s).
SWARM_CONFIRM = 1.5

Started = Callable[[Handover], Awaitable[None]]


@dataclass(frozen=True)
class Rolled:
    handover: Handover
    failure: NotebookFailed | None  # None: it answers and has taken over
    reverted: bool = False  # it failed, and what it replaces serves again


class Rollout:
    def __init__(
        self, settings: RolloutSettings, runtime: Runtime, probe: TraefikProbe, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.probe = probe
        self.metrics = metrics
        self._start_slots = asyncio.Semaphore(settings.start_concurrency)

    async def roll(
        self,
        launch: Launch,
        kind: str,
        replaces: Sequence[str] = (),
        *,
        fallback: bool = False,
        started: Started | None = None,
        announce: Callable[[], None] | None = None,
    ) -> Rolled:
        """Start `launch` in place of the workloads `replaces` (ids), wait until it answers,
        then hand over for good or back. `started` runs once the runtime has it (a Swarm
        server is pinned to its node there); `announce` once it starts under the slots."""
        launched = time.monotonic()
        async with self._start_slots:
            if announce is not None:
                announce()
            try:
                handover = await self.runtime.start(launch, replaces=list(replaces))
            except NotebookFailed:
                self._observe(kind, launched, ok=False)
                raise
        if started is not None:
            await started(handover)
        fallback = fallback and bool(handover.replaces)  # a Swarm service may be new after all
        failure = await self._wait_until_answering(
            handover.id, launch.host, launch.limits.memory, stop=not fallback
        )
        self._observe(kind, launched, ok=failure is None)
        if failure is not None and fallback:
            await self.runtime.revert(handover)
            return Rolled(handover, failure, reverted=True)
        # Answering, or failed with nothing to fall back to: it keeps its logs.
        await self.runtime.complete(handover)
        return Rolled(handover, failure)

    async def _wait_until_answering(
        self, workload_id: str, host: str, memory_limit: int, stop: bool = True
    ) -> NotebookFailed | None:
        """Running means answering through Traefik. A workload that exits, runs out of
        memory or stays silent past the deadline is stopped (unless `stop` is False), and
        the failure (with its log tail) returned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.ready_timeout
        memory = memory_limit // 2**20
        delay = 0.1  # Jupyter answers within a few seconds: ask often, then back off
        patience = FIRST_PATIENCE
        answering_since: float | None = None
        while True:
            state = await self.runtime.state(workload_id)
            failure: NotebookFailed | None = None
            if state is None:
                failure = NotebookFailed("start_failed", "the container was removed while starting")
            elif state.oom_killed:
                failure = NotebookFailed(
                    "out_of_memory", f"the notebook ran out of memory (limit {memory} MiB)"
                )
            elif state.restart_count > 0 or state.status in ("exited", "dead"):
                # While Docker restarts it, the exit code of the failed run is not reliable.
                code = f" with code {state.exit_code}" if state.status in ("exited", "dead") else ""
                reason = f": {state.error}" if state.error else " (see its log)"
                failure = NotebookFailed(
                    "start_failed", f"Jupyter exited{code} while starting{reason}"
                )
            elif state.running:
                asked = loop.time()
                if await self.probe.answers(host, patience):
                    if not self.runtime.pulls_from_registry:
                        return None
                    # Swarm: Traefik's route may still hold the address of a task just
                    # removed until its next poll; an answer counts once answers keep
                    # coming past that poll.
                    answering_since = answering_since or asked
                    if loop.time() - answering_since >= SWARM_CONFIRM:
                        return None
                else:
                    answering_since = None
                if loop.time() - asked >= patience:  # waited out: ask again, more patiently
                    patience = min(patience * 2, MOST_PATIENCE)
            if failure is None and loop.time() > deadline:
                waited = f"within {self.settings.ready_timeout:.0f} s"
                failure = NotebookFailed(
                    "not_ready",
                    f"no node could run it {waited} ({state.error}; see SWARM_PLACEMENT)"
                    if state is not None and state.status == "unplaced"
                    else f"the notebook did not answer through the proxy {waited}",
                )
            if failure is not None:
                failure.log = await self.runtime.logs_tail(workload_id, LOG_TAIL)
                if stop:
                    await self.runtime.stop(workload_id)
                return failure
            await asyncio.sleep(delay)
            delay = min(delay * 1.2, 1.0)

    async def answers(self, host: str, timeout: float) -> bool:
        """Whether what already runs at `host` answers within `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self.probe.answers(host):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.5)
        return True

    def _observe(self, kind: str, started: float, *, ok: bool) -> None:
        """How long a workload took from being asked for to answering (or failing to)."""
        outcome = "succeeded" if ok else "failed"
        self.metrics.launch_seconds.labels(kind, outcome).observe(time.monotonic() - started)
