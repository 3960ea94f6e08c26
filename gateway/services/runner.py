"""Runs jobs in the background, every step recorded in the store.

Each project has a queue: one job runs at a time, and when it ends, everything that queued up
meanwhile folds into the last of them (the others become `coalesced`, covered by it), so a burst
of notifications costs at most two runs. Pushes are queued in order without folding (each covers
its own range of commits); reconcile passes fold like projects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from gateway import logs
from gateway.adapters.store import Store
from gateway.errors import DeployFailed, GatewayError
from gateway.metrics import Metrics
from gateway.models import NotebookState, Phase, ProgressEvent
from gateway.records import JobAction, JobError, JobOrigin, JobRecord, JobState, LogLine, now
from gateway.redact import Redactor
from gateway.services.pipeline import JobProgress, Pipeline
from gateway.services.progress import JobFeeds

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
INFRA_REASONS = {"push_failed"}  # a dependency failed rather than the notebook itself
# Queue names for jobs that are not about one project; project names cannot hold a NUL.
PUSH_QUEUE = "\0push"
RECONCILE_QUEUE = "\0reconcile"
REPOSITORY = "*"  # the `project` of push and reconcile jobs


@dataclass
class _Queue:
    running: JobRecord | None = None
    pending: list[JobRecord] = field(default_factory=list)


@dataclass
class _Outcome:
    error: JobError | None = None
    result: dict[str, Any] = field(default_factory=dict)
    changed: bool = False


class JobRunner:
    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        redact: Redactor,
        retention: timedelta,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.redact = redact
        self.retention = retention
        self.metrics = metrics or Metrics()
        self.feeds = JobFeeds(store)
        self._queues: dict[str, _Queue] = {}
        self._done: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def submit(
        self,
        project: str,
        action: JobAction,
        *,
        origin: JobOrigin = JobOrigin.API,
        params: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        dedupe_within: float | None = None,
        idempotency_key: str | None = None,
        parent: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Record the job, then queue it. The row exists before anyone is told about it.
        Returns the job and whether it is new (False: a duplicate delivery of an earlier one)."""
        job, created = await self.store.create_job(
            project, action, origin=origin, params=params, dedupe_key=dedupe_key,
            dedupe_within=dedupe_within, idempotency_key=idempotency_key, parent=parent,
        )  # fmt: skip
        if created:
            log.info("queued job %s (%s %s, from %s)", job.id, action, project, origin)
            ahead = self._queues.get(_queue_key(job), _Queue()).running
            if ahead is not None:  # the first line of a new job, before it can start
                waiting = ProgressEvent(Phase.WAITING, f"queued behind job {ahead.id}")
                await self.store.append_log(job.id, [LogLine(now(), waiting, 1)])
            self._enqueue(job)
        return job, created

    async def settle(self, job_id: str) -> None:
        """Until the job has run (or was folded into another)."""
        done = self._done.get(job_id)
        if done is not None:
            # A client that hangs up must not cancel the deploy.
            await asyncio.shield(done)

    async def wait(self, job_id: str) -> JobRecord:
        """The job that did the work: this one, or the one it was folded into."""
        while True:
            await self.settle(job_id)
            job = await self.store.get_job(job_id)
            assert job is not None, job_id
            if job.state is not JobState.COALESCED or job.covered_by is None:
                return job
            job_id = job.covered_by

    async def resume(self) -> int:
        """Queue again what a previous process left unfinished, in the order it arrived."""
        await self.store.prune_jobs(now(self.retention))
        jobs = await self.store.unfinished_jobs()
        for job in jobs:
            log.info("resuming job %s (%s %s)", job.id, job.action, job.project)
            self._enqueue(job)
        return len(jobs)

    async def close(self) -> None:
        """Stop running jobs; they stay unfinished in the store and resume on the next start."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.feeds.close_all()

    # -- queues ---------------------------------------------------------------------------

    def _enqueue(self, job: JobRecord) -> None:
        self._done.setdefault(job.id, asyncio.get_running_loop().create_future())
        key = _queue_key(job)
        self._queues.setdefault(key, _Queue()).pending.append(job)
        self._next(key)

    def _next(self, key: str) -> None:
        queue = self._queues[key]
        if queue.running is not None or not queue.pending or self._closing:
            return
        if key == PUSH_QUEUE:
            job, covered = queue.pending.pop(0), []
        else:
            *covered, job = queue.pending
            queue.pending = []
        queue.running = job
        task = asyncio.create_task(self._run(key, job, covered), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, job: JobRecord, covered: list[JobRecord]) -> None:
        try:
            for other in covered:
                await self.store.coalesce(other.id, job.id)
                self.feeds.close(other.id)
                self._resolve(other.id)
            outcome = await self._execute(job)
            if outcome is not None and _forgettable(job, covered, outcome):
                await self.store.delete_job(job.id)  # a periodic pass that found nothing
        except Exception as exc:  # in the bookkeeping itself: the job must still end
            log.exception("job %s could not be recorded", job.id)
            error = JobError.internal(self.redact(f"internal error: {exc}"))
            with contextlib.suppress(Exception):
                await self.store.finish_job(job.id, JobState.FAILED, None, [], error)
            self.feeds.close(job.id)
        finally:
            if not self._closing:
                self._resolve(job.id)
                self._queues[key].running = None
                self._next(key)

    def _resolve(self, job_id: str) -> None:
        done = self._done.pop(job_id, None)
        if done is not None and not done.done():
            done.set_result(None)

    # -- one job ----------------------------------------------------------------------------

    async def _execute(self, job: JobRecord) -> _Outcome | None:
        """Run a job to its end and record it. None when it was interrupted (it will resume)."""
        # On every line this task (and the tasks it starts) logs; the request that queued it
        # logged the job's id already.
        logs.job_id.set(job.id)
        logs.request_id.set(None)
        feeds = self.feeds
        await feeds.open(job.id)

        def emit(event: ProgressEvent) -> None:
            event = replace(event, message=self.redact(event.message))
            feeds.publish(job.id, event)
            # Build and push output goes to the job's log; the process log keeps the steps.
            level = logging.DEBUG if event.output else logging.INFO
            where = f" [{event.notebook}]" if event.notebook else ""
            log.log(level, "%s%s: %s", event.phase, where, event.message)

        async def flush_periodically() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL)
                await feeds.flush(job.id)

        progress = JobProgress(emit)
        flusher = asyncio.create_task(flush_periodically())
        started = time.monotonic()
        self.metrics.jobs_in_progress.inc()
        try:
            await self.store.mark_running(job.id)
            outcome = await self._dispatch(job, progress)
        finally:
            self.metrics.jobs_in_progress.dec()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await feeds.flush(job.id)
        error = outcome.error
        state = JobState.FAILED if error else JobState.SUCCEEDED
        emit(
            ProgressEvent(Phase.FAILED if error else Phase.DONE, error.message if error else "done")
        )
        await feeds.flush(job.id)
        result = {**outcome.result, "changed": outcome.changed}
        await self.store.finish_job(
            job.id, state, progress.commit, progress.outcomes, error, result
        )
        feeds.close(job.id)
        self._count(job, state, time.monotonic() - started, progress, error)
        await self.store.prune_jobs(now(self.retention))
        return outcome

    def _count(
        self,
        job: JobRecord,
        state: JobState,
        seconds: float,
        progress: JobProgress,
        error: JobError | None,
    ) -> None:
        metrics = self.metrics
        metrics.jobs.labels(str(job.action), str(state)).inc()
        metrics.job_seconds.labels(str(job.action), str(state)).observe(seconds)
        for outcome in progress.outcomes:
            failed = outcome.state is NotebookState.FAILED
            metrics.notebooks.labels("failed" if failed else str(outcome.action)).inc()
            if failed:
                metrics.failures.labels(outcome.reason or "unknown").inc()
        if error is not None and error.code != DeployFailed.code:  # notebooks counted above
            metrics.failures.labels(error.code).inc()

    async def _dispatch(self, job: JobRecord, progress: JobProgress) -> _Outcome:
        try:
            if job.action is JobAction.PUSH:
                return await self._push(job, progress)
            if job.action is JobAction.RECONCILE:
                return await self._reconcile(job, progress)
            await self.pipeline.run(job, progress)
        except GatewayError as exc:
            return _Outcome(self._error(exc), changed=progress.changed)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            error = JobError.internal(self.redact(f"internal error: {exc}"))
            return _Outcome(error, changed=progress.changed)
        failed = [o for o in progress.outcomes if o.state is NotebookState.FAILED]
        if not failed:
            return _Outcome(changed=progress.changed)
        summary = "; ".join(f"{o.path}: {o.message}" for o in failed)
        failure = DeployFailed(
            f"{len(failed)} of {len(progress.outcomes)} notebook(s) failed: {summary}"
        )
        if any(o.reason in INFRA_REASONS for o in failed):
            failure.status = 502
        return _Outcome(self._error(failure), changed=True)

    async def _push(self, job: JobRecord, progress: JobProgress) -> _Outcome:
        """Queue an update for every project the push changed; they report on their own."""
        projects = await self.pipeline.changed_projects(job, progress)
        children = await self._spawn_updates(job, projects, JobOrigin.WEBHOOK, progress)
        return _Outcome(result={"projects": projects, "jobs": children}, changed=bool(children))

    async def _reconcile(self, job: JobRecord, progress: JobProgress) -> _Outcome:
        """Bring every project the gateway knows of back to what the repository says."""
        projects = await self.pipeline.known_projects(job, progress)
        children = await self._spawn_updates(job, projects, JobOrigin.RECONCILE, progress)
        updated, failed = [], []
        for project, child_id in children.items():
            child = await self.wait(child_id)
            if child.state is JobState.FAILED:
                failed.append(f"{project}: {child.error.message if child.error else 'failed'}")
            elif child.result.get("changed"):
                updated.append(project)
            elif child.id == child_id and not await self.store.covers_others(child_id):
                await self.store.delete_job(child_id)  # checked, nothing to do, nobody waits
        result = {"projects": projects, "updated": updated, "failed": failed}
        error = None
        if failed:
            error = self._error(
                DeployFailed(f"{len(failed)} project(s) failed: {'; '.join(failed)}")
            )
        return _Outcome(error, result, changed=bool(updated or failed))

    async def _spawn_updates(
        self, job: JobRecord, projects: list[str], origin: JobOrigin, progress: JobProgress
    ) -> dict[str, str]:
        children = {}
        for project in projects:
            child, _ = await self.submit(project, JobAction.UPDATE, origin=origin, parent=job.id)
            children[project] = child.id
            progress.emit(ProgressEvent(Phase.WAITING, f"queued job {child.id} for {project!r}"))
        return children

    def _error(self, exc: GatewayError) -> JobError:
        return JobError(exc.code, exc.status, self.redact(exc.message), exc.detail)


def _queue_key(job: JobRecord) -> str:
    if job.action is JobAction.PUSH:
        return PUSH_QUEUE
    if job.action is JobAction.RECONCILE:
        return RECONCILE_QUEUE
    return job.project


def _forgettable(job: JobRecord, covered: list[JobRecord], outcome: _Outcome) -> bool:
    """A periodic reconcile pass that found nothing to do would only bury real jobs."""
    return (
        job.action is JobAction.RECONCILE
        and job.origin is JobOrigin.RECONCILE
        and not covered
        and not outcome.changed
        and outcome.error is None
    )
