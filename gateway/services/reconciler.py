"""Periodic reconciliation: at start-up and every RECONCILE_INTERVAL seconds, every project the
gateway knows of is brought back to what the repository says. That restarts crashed notebooks,
removes orphans, adopts running containers after a restart without rebuilding them, and catches
up with notifications that never arrived."""

from __future__ import annotations

import asyncio
import logging

from gateway.records import JobAction, JobOrigin
from gateway.services.runner import REPOSITORY, JobRunner
from gateway.services.server_lifecycle import ServerLifecycle

log = logging.getLogger(__name__)


async def reconcile_periodically(
    runner: JobRunner, servers: ServerLifecycle, interval: float
) -> None:
    while True:
        try:
            job, _ = await runner.submit(
                REPOSITORY, JobAction.RECONCILE, origin=JobOrigin.RECONCILE
            )
            await runner.settle(job.id)
            await servers.reconcile()
        except Exception:  # the next pass tries again; a crashed loop would never reconcile
            log.exception("reconcile pass failed")
        await asyncio.sleep(interval)
