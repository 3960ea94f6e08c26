"""Job queue semantics, with a stand-in pipeline that records what it is asked to run (the
real pipeline is exercised against the real engine in tests/integration)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from gateway.adapters.store import Store
from gateway.records import JobAction, JobOrigin, JobRecord, JobState
from gateway.redact import Redactor
from gateway.services.pipeline import JobProgress, Pipeline
from gateway.services.runner import REPOSITORY, JobRunner


class RecordingPipeline:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.release = asyncio.Event()

    async def run(self, job: JobRecord, progress: JobProgress) -> None:
        self.ran.append(job.id)
        await self.release.wait()

    async def running(self, count: int) -> None:
        """Until `count` jobs have started (a queue that should not start them fails here)."""
        await eventually(lambda: len(self.ran) >= count)

    async def changed_projects(self, job: JobRecord, progress: JobProgress) -> list[str]:
        self.ran.append(job.id)
        return [str(p) for p in job.params["projects"]]

    async def known_projects(self, job: JobRecord, progress: JobProgress) -> list[str]:
        return ["a", "b"]


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            outcome = check()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(0.01)


async def make_runner(tmp_path: Path) -> tuple[JobRunner, RecordingPipeline, Store]:
    store = await Store.open(tmp_path / "gateway.db")
    pipeline = RecordingPipeline()
    runner = JobRunner(store, cast(Pipeline, pipeline), Redactor([]), timedelta(days=1))
    return runner, pipeline, store


async def test_a_burst_for_one_project_runs_at_most_twice_and_the_last_wins(tmp_path: Path) -> None:
    runner, pipeline, store = await make_runner(tmp_path)
    jobs = [(await runner.submit("p", JobAction.UPDATE))[0] for _ in range(10)]
    await pipeline.running(1)
    # One at a time: the first runs, the others wait (and the end shows only two ever ran).
    assert (await store.job_log(jobs[3].id))[0].event.message == f"queued behind job {jobs[0].id}"
    pipeline.release.set()
    finals = await asyncio.gather(*(runner.wait(job.id) for job in jobs))
    assert pipeline.ran == [jobs[0].id, jobs[-1].id]
    assert {f.id for f in finals[1:]} == {jobs[-1].id}
    assert all(f.state is JobState.SUCCEEDED for f in finals)
    folded = await store.get_job(jobs[4].id)
    assert (
        folded is not None
        and folded.state is JobState.COALESCED
        and folded.covered_by == jobs[-1].id
    )
    await runner.close()
    await store.close()


async def test_projects_run_side_by_side(tmp_path: Path) -> None:
    runner, pipeline, store = await make_runner(tmp_path)
    a, _ = await runner.submit("a", JobAction.UPDATE)
    b, _ = await runner.submit("b", JobAction.UPDATE)
    await pipeline.running(2)  # both at once, while neither may finish
    assert sorted(pipeline.ran) == sorted([a.id, b.id])
    pipeline.release.set()
    await asyncio.gather(runner.wait(a.id), runner.wait(b.id))
    await runner.close()
    await store.close()


async def test_pushes_are_never_folded_and_queue_their_projects(tmp_path: Path) -> None:
    runner, pipeline, store = await make_runner(tmp_path)
    pipeline.release.set()
    first, _ = await runner.submit(
        REPOSITORY, JobAction.PUSH, params={"projects": ["a"]}, dedupe_key="k1"
    )
    second, _ = await runner.submit(
        REPOSITORY, JobAction.PUSH, params={"projects": ["b"]}, dedupe_key="k2"
    )
    again, created = await runner.submit(
        REPOSITORY, JobAction.PUSH, params={"projects": ["a"]}, dedupe_key="k1"
    )
    assert not created and again.id == first.id
    done = [await runner.wait(first.id), await runner.wait(second.id)]
    assert [d.state for d in done] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    children: dict[str, Any] = {**done[0].result["jobs"], **done[1].result["jobs"]}
    assert set(children) == {"a", "b"}
    for child_id in children.values():
        child = await runner.wait(child_id)
        assert child.parent in (first.id, second.id) and child.origin is JobOrigin.WEBHOOK
    await runner.close()
    await store.close()


async def test_a_periodic_pass_that_changes_nothing_leaves_no_trace(tmp_path: Path) -> None:
    runner, pipeline, store = await make_runner(tmp_path)
    pipeline.release.set()
    periodic, _ = await runner.submit(REPOSITORY, JobAction.RECONCILE, origin=JobOrigin.RECONCILE)
    await runner.settle(periodic.id)

    async def no_trace() -> bool:
        return await store.list_jobs() == []

    await eventually(no_trace)
    manual, _ = await runner.submit(REPOSITORY, JobAction.RECONCILE)
    job = await runner.wait(manual.id)
    assert job.state is JobState.SUCCEEDED and job.result["projects"] == ["a", "b"]
    assert [j.id for j in await store.list_jobs()] == [manual.id]  # its no-op children are gone
    await runner.close()
    await store.close()


async def test_unfinished_jobs_resume_in_order_and_fold(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "gateway.db")
    left = [(await store.create_job("p", JobAction.UPDATE))[0] for _ in range(3)]
    await store.close()
    runner, pipeline, store = await make_runner(tmp_path)
    assert await runner.resume() == 3
    await pipeline.running(1)
    pipeline.release.set()
    finals = [await runner.wait(job.id) for job in left]
    # In the order they arrived: the oldest first; the two behind it folded into the newest.
    assert pipeline.ran == [left[0].id, left[2].id]
    assert [f.id for f in finals] == [left[0].id, left[2].id, left[2].id]
    folded = await store.get_job(left[1].id)
    assert folded is not None and folded.covered_by == left[2].id
    await runner.close()
    await store.close()


async def test_a_job_whose_bookkeeping_fails_still_ends_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, pipeline, store = await make_runner(tmp_path)

    async def broken(job_id: str) -> None:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(store, "mark_running", broken)
    try:
        job, _ = await runner.submit("p", JobAction.UPDATE)
        async with asyncio.timeout(5):
            finished = await runner.wait(job.id)
        assert finished.state is JobState.FAILED
        assert finished.error is not None and finished.error.code == "internal_error"
        assert "disk I/O error" in finished.error.message
        # The queue goes on.
        monkeypatch.undo()
        pipeline.release.set()
        second, _ = await runner.submit("p", JobAction.UPDATE)
        async with asyncio.timeout(5):
            assert (await runner.wait(second.id)).state is JobState.SUCCEEDED
    finally:
        await runner.close()
        await store.close()
