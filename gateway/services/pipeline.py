"""One job, start to end: fetch -> desired state -> plan -> apply -> publish URL.md."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import git

from gateway import discovery
from gateway.adapters.docker import DockerEngine
from gateway.adapters.git import NotebookRepo
from gateway.desired import desired_notebooks
from gateway.errors import UnknownProject
from gateway.models import DesiredNotebook, Emit, NotebookOutcome, Phase, ProgressEvent
from gateway.plan import make_plan
from gateway.services.deployer import Deployer
from gateway.services.store import Job, JobAction, Store
from gateway.settings import Settings
from gateway.urlmd import render_url_md

log = logging.getLogger(__name__)

URL_FILE = "URL.md"
SKIP_CI = "[skip ci]"


@dataclass
class JobProgress:
    """What a running job has produced so far; kept even when the job fails halfway."""

    emit: Emit
    commit: str | None = None
    outcomes: list[NotebookOutcome] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        docker: DockerEngine,
        repo: NotebookRepo,
        deployer: Deployer,
        store: Store,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.repo = repo
        self.deployer = deployer
        self.store = store
        self._publish_lock = asyncio.Lock()
        self.limits = discovery.ContextLimits(
            settings.max_file_size, settings.max_context_size, settings.max_context_files
        )

    async def run(self, job: Job, progress: JobProgress) -> None:
        emit = progress.emit
        emit(ProgressEvent(Phase.FETCHING, f"fetching {self.repo.branch or 'the default branch'}"))
        commit = await self.repo.fetch()
        progress.commit = commit
        emit(ProgressEvent(Phase.FETCHING, f"working from commit {commit}"))

        actual = await self.docker.list_notebooks(job.project)
        desired: list[DesiredNotebook] = []
        entries = None
        if job.action is JobAction.UPDATE:
            entries = await self.repo.project_entries(commit, job.project)
        if entries is not None:
            # Notebooks show the commit that last changed their project, not the tip (which
            # may be an unrelated change, or the gateway's own URL.md commit).
            changed_in = await self.repo.last_change(commit, job.project)
            snapshot = discovery.snapshot(job.project, changed_in, entries, self.limits)
            desired = desired_notebooks(snapshot, self.settings, await self._base_identity(emit))
            emit(ProgressEvent(Phase.FETCHING, f"{len(desired)} notebook(s) in {job.project!r}"))
        elif not actual and not await self.store.published(job.project):
            message = (
                f"there is no project {job.project!r} in the repository at commit {commit[:12]}"
                if job.action is JobAction.UPDATE
                else f"nothing of project {job.project!r} is deployed"
            )
            raise UnknownProject(message, detail={"projects": await self.repo.projects(commit)})
        elif job.action is JobAction.UPDATE:
            emit(
                ProgressEvent(Phase.REMOVING, "the project folder is gone; removing its notebooks")
            )

        plan = make_plan(desired, actual)
        registry = self.deployer.registry
        if plan.deploy and registry is not None and registry.auth is not None:
            await self.docker.check_login(registry.auth)
        progress.outcomes = await self.deployer.apply(
            plan, await self.repo.commit_time(commit), emit
        )
        await self._publish(job, progress.outcomes, emit)

    async def _base_identity(self, emit: Emit) -> str:
        """The base image's id, part of every image's content hash. Pulled once if missing."""
        image = self.settings.base_image
        found = await self.docker.image_id(image)
        if found is None:
            emit(ProgressEvent(Phase.FETCHING, f"pulling base image {image}"))
            found = await self.docker.pull(image)
        return found

    async def _publish(self, job: Job, outcomes: list[NotebookOutcome], emit: Emit) -> None:
        await self.store.replace_project(job.project, outcomes)
        author = git.Actor(self.settings.git_bot_name, self.settings.git_bot_email)
        message = (
            f"Update {URL_FILE} for {job.project} {SKIP_CI}\n\n"
            f"Written by notebook-gateway for job {job.id}.\n"
        )
        emit(ProgressEvent(Phase.PUBLISHING, f"updating {URL_FILE}"))
        # Render and push under one lock: jobs of other projects publish too, and a render
        # made before their push would overwrite their rows with older ones.
        async with self._publish_lock:
            content = render_url_md(await self.store.published(), self.settings.repo_url)
            commit = await self.repo.publish_file(URL_FILE, content.encode(), message, author)
        emit(
            ProgressEvent(
                Phase.PUBLISHING,
                f"{URL_FILE} committed as {commit}" if commit else f"{URL_FILE} already up to date",
            )
        )
