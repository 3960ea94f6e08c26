"""What the status page shows: every project and notebook with its state, link, commit and last
deploy, the jobs under way, and (for admins) users' servers. Read from the store, the runtime's
in-memory index and the clone: nothing here waits on Docker or the git remote."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.adapters.git import NotebookRepo
from gateway.adapters.runtimes.base import Runtime
from gateway.adapters.store import Store
from gateway.models import NotebookOutcome, NotebookState, RunningNotebook, serving
from gateway.records import JobRecord


@dataclass(frozen=True)
class NotebookRow:
    name: str
    container: str
    state: str  # running, failed, stopped, missing
    url: str
    commit: str
    message: str


@dataclass(frozen=True)
class LastDeploy:
    job: str
    state: str
    finished: str
    commit: str


@dataclass(frozen=True)
class ProjectRow:
    name: str
    notebooks: list[NotebookRow] = field(default_factory=list)
    last_deploy: LastDeploy | None = None


@dataclass(frozen=True)
class ActiveJob:
    id: str
    project: str
    action: str
    state: str
    created: str


@dataclass(frozen=True)
class Overview:
    projects: list[ProjectRow]
    jobs: list[ActiveJob]
    commit: str | None  # the last fetched commit of the branch

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class StatusBoard:
    def __init__(self, store: Store, runtime: Runtime, repo: NotebookRepo) -> None:
        self.store = store
        self.runtime = runtime
        self.repo = repo

    async def overview(self) -> Overview:
        records = await self.store.published()
        live = serving(await self.runtime.list_notebooks())
        last_jobs = await self.store.last_jobs()
        commit = await self.repo.last_fetched()
        names = set(await self.repo.projects(commit)) if commit else set()
        names.update(record.project for record in records)
        names.update(project for project, _ in live)
        by_project: dict[str, list[NotebookRow]] = {name: [] for name in names}
        recorded = {(r.project, r.path) for r in records}
        for record in records:
            by_project[record.project].append(_row(live.get((record.project, record.path)), record))
        for key, notebook in live.items():
            if key not in recorded:  # running, but no job has recorded it yet (adopted)
                by_project[notebook.project].append(_row(notebook))
        projects = [
            ProjectRow(name, sorted(rows, key=lambda r: r.name), _last(last_jobs.get(name)))
            for name, rows in sorted(by_project.items())
        ]
        jobs = [
            ActiveJob(j.id, j.project, str(j.action), str(j.state), j.created_at)
            for j in await self.store.unfinished_jobs()
        ]
        return Overview(projects, jobs, commit)


def _row(container: RunningNotebook | None, record: NotebookOutcome | None = None) -> NotebookRow:
    """What the last job recorded, corrected by what runs now (a container alone: adopted)."""
    source = record or container
    assert source is not None
    state, message = (str(record.state), record.message) if record else ("running", "")
    if container is None and state == NotebookState.RUNNING:
        state, message = "missing", "its container is gone; the next reconcile brings it back"
    elif container is not None and not container.running:
        state, message = "stopped", f"the container is {container.status}"
    name = container.server if container else ""
    return NotebookRow(source.path, name, state, source.url, source.commit, message)


def _last(job: JobRecord | None) -> LastDeploy | None:
    if job is None:
        return None
    return LastDeploy(job.id, str(job.state), job.finished_at or "", job.commit or "")
