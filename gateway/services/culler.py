"""Idle culling, as JupyterHub's idle culler does it: every CULL_INTERVAL, users' servers whose
Jupyter reports no activity for CULL_IDLE_TIMEOUT (its own /api/status, asked through Traefik),
or that are older than CULL_MAX_AGE, are stopped. Published notebooks are left alone unless
CULL_PUBLISHED is set. A server whose activity cannot be read is never culled on a guess."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from gateway import naming
from gateway.adapters.probe import TraefikProbe
from gateway.adapters.runtimes.base import Runtime
from gateway.adapters.store import Store
from gateway.metrics import Metrics
from gateway.models import Identity
from gateway.records import ServerState
from gateway.services.servers import ServerManager
from gateway.settings import CullSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Culled:
    name: str
    kind: str  # user or published
    reason: str  # idle or max_age
    detail: str


class Culler:
    def __init__(
        self,
        settings: CullSettings,
        store: Store,
        runtime: Runtime,
        servers: ServerManager,
        probe: TraefikProbe,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.servers = servers
        self.probe = probe
        self.metrics = metrics

    @property
    def enabled(self) -> bool:
        return bool(self.settings.cull_idle_timeout or self.settings.cull_max_age)

    async def run_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cull_interval)
            try:
                await self.cull()
            except Exception:  # the next pass tries again; a crashed loop would never cull
                log.exception("culling pass failed")

    async def cull(self) -> list[Culled]:
        """One pass; what it stopped."""
        culled = []
        for record in await self.store.servers():
            if record.state is not ServerState.RUNNING:
                continue
            host = naming.host_name(record.name, self.settings.base_domain)
            verdict = await self._verdict(host, _timestamp(record.created_at))
            if verdict is not None:
                await self.servers.stop(Identity.administrator(), record.name, forced=False)
                culled.append(Culled(record.name, "user", *verdict))
        if self.settings.cull_published:
            for notebook in await self.runtime.list_notebooks():
                host = urlsplit(notebook.url).hostname or ""
                if not notebook.running or not host:
                    continue
                verdict = await self._verdict(host, None)
                if verdict is not None:  # back with the next deploy or reconcile pass
                    await self.runtime.remove(notebook.id)
                    culled.append(Culled(notebook.server, "published", *verdict))
        for item in culled:
            log.info("culled %s server %s: %s", item.kind, item.name, item.detail)
            self.metrics.culled.labels(item.kind, item.reason).inc()
        return culled

    async def _verdict(self, host: str, created: float | None) -> tuple[str, str] | None:
        """(reason, in words) when the server at `host` should go; None to keep it."""
        settings, now = self.settings, time.time()
        # Jupyter is asked only for what it alone knows: its activity, or a published
        # notebook's age.
        needed = settings.cull_idle_timeout or (created is None and settings.cull_max_age)
        status = await self.probe.activity(host) if needed else None
        if created is None and status is not None:
            created = _timestamp(str(status.get("started", "")))
        if settings.cull_max_age and created is not None and now - created > settings.cull_max_age:
            return "max_age", f"older than CULL_MAX_AGE ({settings.cull_max_age:.0f} s)"
        if not settings.cull_idle_timeout or status is None:
            return None
        last = _timestamp(str(status.get("last_activity", "")))
        if last is not None and now - last > settings.cull_idle_timeout:
            return "idle", (
                f"no activity for {now - last:.0f} s"
                f" (CULL_IDLE_TIMEOUT {settings.cull_idle_timeout:.0f} s)"
            )
        return None


def _timestamp(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (Jupyter writes a trailing Z)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
