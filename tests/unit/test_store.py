from datetime import timedelta
from pathlib import Path

from gateway.models import NotebookAction, NotebookOutcome, NotebookState, Phase, ProgressEvent
from gateway.services.store import JobAction, JobState, LogLine, Store, now


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
    assert [line["message"] for line in await store.job_log(done.id)] == ["one", "two"]
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
    await store.finish_job(old.id, JobState.FAILED, None, [], {"code": "x"})
    running, _ = await store.create_job("p", JobAction.UPDATE)
    assert await store.prune_jobs(now(timedelta(days=1))) == 0  # finished just now: kept
    assert await store.prune_jobs(now(-timedelta(seconds=1))) == 1
    assert await store.get_job(old.id) is None and await store.job_log(old.id) == []
    assert await store.get_job(running.id) is not None  # unfinished jobs are never pruned
    await store.close()
