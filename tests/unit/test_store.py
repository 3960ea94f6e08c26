import asyncio
from datetime import timedelta
from pathlib import Path

from gateway.adapters.store import Store
from gateway.models import NotebookAction, NotebookOutcome, NotebookState, Phase, ProgressEvent
from gateway.records import JobAction, JobError, JobState, LogLine, now


async def test_jobs_survive_reopening_and_unfinished_ones_are_found(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "gateway.db")
    done, _ = await store.create_job("climate", JobAction.UPDATE)
    pending, _ = await store.create_job("genomics", JobAction.DELETE)
    await store.mark_running(done.id)
    await store.append_log(done.id, [LogLine(now(), ProgressEvent(Phase.FETCHING, "one"))])
    await store.append_log(
        done.id, [LogLine(now(), ProgressEvent(Phase.BUILDING, "two", "a.ipynb"))]
    )
    outcome = NotebookOutcome(
        "climate", "a.ipynb", NotebookState.RUNNING, NotebookAction.BUILT, url="u"
    )
    await store.finish_job(done.id, JobState.SUCCEEDED, "c" * 40, [outcome], None)
    await store.close()

    store = await Store.open(tmp_path / "gateway.db")
    job = await store.get_job(done.id)
    assert job is not None and job.state is JobState.SUCCEEDED and job.notebooks == [outcome]
    assert [line.event.message for line in await store.job_log(done.id)] == ["one", "two"]
    assert [j.id for j in await store.unfinished_jobs()] == [pending.id]
    await store.close()


async def test_published_notebooks_are_replaced_per_project(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "gateway.db")
    a = NotebookOutcome("p", "a.ipynb", NotebookState.RUNNING, NotebookAction.BUILT)
    b = NotebookOutcome(
        "p", "b.ipynb", NotebookState.FAILED, NotebookAction.NONE, log=["long", "log"]
    )
    other = NotebookOutcome("q", "c.ipynb", NotebookState.RUNNING, NotebookAction.BUILT)
    assert await store.replace_project("p", [a, b]) is True
    assert await store.replace_project("p", [a, b]) is False  # the same records again
    await store.replace_project("q", [other])
    await store.replace_project(
        "p", [a, NotebookOutcome("p", "b.ipynb", NotebookState.REMOVED, NotebookAction.REMOVED)]
    )
    assert [n.path for n in await store.published()] == ["a.ipynb", "c.ipynb"]
    assert await store.published("p") == [a]
    await store.close()


async def test_old_finished_jobs_are_pruned_with_their_logs(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "gateway.db")
    old, _ = await store.create_job("p", JobAction.UPDATE)
    await store.append_log(old.id, [LogLine(now(), ProgressEvent(Phase.DONE, "x"))])
    await store.finish_job(old.id, JobState.FAILED, None, [], JobError("x", 500, "x"))
    running, _ = await store.create_job("p", JobAction.UPDATE)
    assert await store.prune_jobs(now(timedelta(days=1))) == 0  # finished just now: kept
    assert await store.prune_jobs(now(-timedelta(seconds=1))) == 1
    assert await store.get_job(old.id) is None and await store.job_log(old.id) == []
    assert await store.get_job(running.id) is not None  # unfinished jobs are never pruned
    await store.close()


async def test_jobs_running_side_by_side_share_one_store(tmp_path: Path) -> None:
    # Every job writes through the one connection; interleaved statements and commits once
    # broke SQLite ("bad parameter or other API misuse") and could repeat log sequence numbers.
    store = await Store.open(tmp_path / "gateway.db")

    async def run(project: str, round_: int) -> str:
        job, _ = await store.create_job(project, JobAction.UPDATE, dedupe_key=f"{project}{round_}")
        await store.mark_running(job.id)
        for step in range(4):
            line = LogLine(now(), ProgressEvent(Phase.BUILDING, f"{step}", "a.ipynb"))
            await store.append_log(job.id, [line, line])
        outcomes = [
            NotebookOutcome(project, f"{n}.ipynb", NotebookState.RUNNING, NotebookAction.BUILT,
                            commit=str(round_))
            for n in range(8)
        ]  # fmt: skip
        await store.replace_project(project, outcomes)
        await store.published()
        await store.finish_job(job.id, JobState.SUCCEEDED, "c" * 40, outcomes, None)
        await store.prune_jobs(now(timedelta(hours=1)))
        return job.id

    try:
        for round_ in range(40):
            ids = await asyncio.gather(*(run(f"p{n}", round_) for n in range(5)))
            for job_id in ids:
                assert [line.event.message for line in await store.job_log(job_id)] == [
                    message for step in range(4) for message in (f"{step}", f"{step}")
                ]
        assert {n.commit for n in await store.published()} == {"39"}
        assert await store.unfinished_jobs() == []
    finally:
        await store.close()
