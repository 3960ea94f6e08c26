"""What the status page shows: every project and notebook with its state, link, commit and last
deploy, the jobs under way, and (for admins) users' servers. Read from the store, the runtime's
in-memory index and the clone: nothing here waits on Docker or the git remote."""

from __future__ import annotations

from gateway.adapters.git import NotebookRepo
from gateway.adapters.runtimes.base import Runtime
from gateway.adapters.store import Store
from gateway.models import NotebookOutcome, NotebookState, RunningNotebook, serving
from gateway.records import JobRecord, JobState
from gateway.schemas import (
    Deployments,
    NotebookRowState,
    StatusJob,
    StatusLastDeploy,
    StatusNotebook,
    StatusProject,
)


class StatusBoard:
    def __init__(self, store: Store, runtime: Runtime, repo: NotebookRepo) -> None:
        self.store = store
        self.runtime = runtime
        self.repo = repo

    async def overview(self) -> Deployments:
        records = await self.store.published()
        live = serving(await self.runtime.list_notebooks())
        last_jobs = await self.store.last_jobs()
        commit = await self.repo.last_fetched()
        names = set(await self.repo.projects(commit)) if commit else set()
        names.update(record.project for record in records)
        names.update(project for project, _ in live)
        by_project: dict[str, list[StatusNotebook]] = {name: [] for name in names}
        recorded = {(r.project, r.path) for r in records}
        for record in records:
            by_project[record.project].append(_row(live.get((record.project, record.path)), record))
        for key, notebook in live.items():
            if key not in recorded:  # running, but no job has recorded it yet (adopted)
                by_project[notebook.project].append(_row(notebook))
        projects = [
            StatusProject(
                name=name,
                notebooks=sorted(rows, key=lambda r: r.name),
                last_deploy=_last(last_jobs.get(name)),
            )
            for name, rows in sorted(by_project.items())
        ]
        jobs = [
            StatusJob(
                id=j.id,
                project=j.project,
                action=str(j.action),
                state="running" if j.state is JobState.RUNNING else "queued",
                created=j.created_at,
            )
            for j in await self.store.unfinished_jobs()
        ]
        return Deployments(projects=projects, jobs=jobs, commit=commit)


def _row(
    container: RunningNotebook | None, record: NotebookOutcome | None = None
) -> StatusNotebook:
    """What the last job recorded, corrected by what runs now (a container alone: adopted)."""
    source = record or container
    assert source is not None
    state: NotebookRowState = "running"
    message = ""
    if record is not None:
        state = "failed" if record.state is NotebookState.FAILED else "running"
        message = record.message
    if container is None and state == "running":
        state, message = "missing", "its container is gone; the next reconcile brings it back"
    elif container is not None and not container.running:
        state, message = "stopped", f"the container is {container.status}"
    return StatusNotebook(
        name=source.path,
        container=container.server if container else "",
        state=state,
        url=source.url,
        commit=source.commit,
        message=message,
    )


def _last(job: JobRecord | None) -> StatusLastDeploy | None:
    if job is None:
        return None
    return StatusLastDeploy(
        job=job.id,
        state="failed" if job.state is JobState.FAILED else "succeeded",
        finished=job.finished_at or "",
        commit=job.commit or "",
    )
