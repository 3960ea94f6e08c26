"""Runs jobs in the background: one at a time per project, every step recorded in the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

from gateway.errors import DeployFailed, GatewayError
from gateway.models import NotebookState, Phase, ProgressEvent
from gateway.redact import Redactor
from gateway.services.pipeline import JobProgress, Pipeline
from gateway.services.store import Job, JobAction, JobState, LogLine, Store, now

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
INFRA_REASONS = {"push_failed"}  # a dependency failed rather than the notebook itself


class JobRunner:
    def __init__(
        self, store: Store, pipeline: Pipeline, redact: Redactor, retention: timedelta
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.redact = redact
        self.retention = retention
        self._project_locks: dict[str, asyncio.Lock] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def submit(self, project: str, action: JobAction) -> Job:
        """Record the job, then start it. The row exists before anyone is told about it."""
        job = await self.store.create_job(project, action)
        self._start(job)
        return job

    async def wait(self, job_id: str) -> Job:
        task = self._tasks.get(job_id)
        if task is not None:
            # A client that hangs up must not cancel the deploy.
            await asyncio.shield(task)
        job = await self.store.get_job(job_id)
        assert job is not None
        return job

    async def resume(self) -> int:
        """Start again what a previous process left unfinished."""
        await self.store.prune_jobs(now(self.retention))
        jobs = await self.store.unfinished_jobs()
        for job in jobs:
            log.info("resuming job %s (%s %s)", job.id, job.action, job.project)
            self._start(job)
        return len(jobs)

    async def close(self) -> None:
        """Stop running jobs; they stay unfinished in the store and resume on the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))

    async def _run(self, job: Job) -> None:
        pending: list[LogLine] = []

        def emit(event: ProgressEvent) -> None:
            event = replace(event, message=self.redact(event.message))
            pending.append(LogLine(now(), event))
            # Build and push output goes to the job's log; the process log keeps the steps.
            level = logging.DEBUG if event.output else logging.INFO
            where = f" [{event.notebook}]" if event.notebook else ""
            log.log(level, "job %s %s%s: %s", job.id[:8], event.phase, where, event.message)

        async def flush() -> None:
            batch = pending[:]
            del pending[: len(batch)]
            await self.store.append_log(job.id, batch)

        async def flush_periodically() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL)
                await flush()

        progress = JobProgress(emit)
        lock = self._project_locks.setdefault(job.project, asyncio.Lock())
        if lock.locked():
            emit(ProgressEvent(Phase.WAITING, f"waiting for the running job of {job.project!r}"))
        flusher = asyncio.create_task(flush_periodically())
        try:
            async with lock:
                await self.store.mark_running(job.id)
                error = await self._execute(job, progress)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await flush()
        state = JobState.FAILED if error else JobState.SUCCEEDED
        emit(
            ProgressEvent(
                Phase.FAILED if error else Phase.DONE, error["message"] if error else "done"
            )
        )
        await flush()
        await self.store.finish_job(job.id, state, progress.commit, progress.outcomes, error)
        await self.store.prune_jobs(now(self.retention))

    async def _execute(self, job: Job, progress: JobProgress) -> dict[str, Any] | None:
        """Run the pipeline; return the job's error, or None if everything worked."""
        try:
            await self.pipeline.run(job, progress)
        except GatewayError as exc:
            return self._error(exc)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            return {
                "code": "internal_error",
                "status": 500,
                "message": self.redact(f"internal error: {exc}"),
                "detail": None,
            }
        failed = [o for o in progress.outcomes if o.state is NotebookState.FAILED]
        if not failed:
            return None
        summary = "; ".join(f"{o.path}: {o.message}" for o in failed)
        failure = DeployFailed(
            f"{len(failed)} of {len(progress.outcomes)} notebook(s) failed: {summary}"
        )
        if any(o.reason in INFRA_REASONS for o in failed):
            failure.status = 502
        return self._error(failure)

    def _error(self, exc: GatewayError) -> dict[str, Any]:
        return {
            "code": exc.code,
            "status": exc.status,
            "message": self.redact(exc.message),
            "detail": exc.detail,
        }
