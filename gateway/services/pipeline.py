"""One job, start to end: fetch -> desired state -> plan -> apply -> publish URL.md."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import git

from gateway.adapters.git import NotebookRepo
from gateway.adapters.images import DockerEngine
from gateway.adapters.runtimes.base import Runtime
from gateway.adapters.store import Store
from gateway.errors import GitError, UnknownProject, UpstreamError
from gateway.models import (
    DesiredNotebook,
    Emit,
    NotebookAction,
    NotebookOutcome,
    Phase,
    ProgressEvent,
)
from gateway.publish import discovery
from gateway.publish.desired import desired_notebooks
from gateway.publish.plan import make_plan
from gateway.publish.urlmd import render_url_md
from gateway.records import JobAction, JobOrigin, JobRecord
from gateway.services.images import ImageSupply
from gateway.services.publisher import Publisher
from gateway.settings import PublishSettings

log = logging.getLogger(__name__)

URL_FILE = "URL.md"
SKIP_CI = "[skip ci]"


@dataclass
class JobProgress:
    """What a running job has produced so far; kept even when the job fails halfway."""

    emit: Emit
    commit: str | None = None
    outcomes: list[NotebookOutcome] = field(default_factory=list)
    changed: bool = False  # anything built, started, removed or committed


class Pipeline:
    def __init__(
        self,
        settings: PublishSettings,
        docker: DockerEngine,
        runtime: Runtime,
        repo: NotebookRepo,
        images: ImageSupply,
        publisher: Publisher,
        store: Store,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.runtime = runtime
        self.repo = repo
        self.images = images
        self.publisher = publisher
        self.store = store
        self._publish_lock = asyncio.Lock()
        self.limits = discovery.ContextLimits(
            settings.max_file_size, settings.max_context_size, settings.max_context_files
        )

    async def run(self, job: JobRecord, progress: JobProgress) -> None:
        """Bring one project to what the repository holds at the branch's tip."""
        emit = progress.emit
        commit = await self._fetch(job, progress)

        await self.runtime.resync(job.project)  # what runs now, not what events said so far
        actual = await self.runtime.list_notebooks(job.project)
        desired: list[DesiredNotebook] = []
        entries = None
        if job.action is JobAction.UPDATE:
            entries = await self.repo.project_entries(commit, job.project)
        if entries is not None:
            # Notebooks show the commit that last changed their project, not the tip (which
            # may be an unrelated change, or the gateway's own URL.md commit).
            changed_in = await self.repo.last_change(commit, job.project)
            snapshot = discovery.snapshot(job.project, changed_in, entries, self.limits)
            desired = desired_notebooks(
                snapshot, self.settings.workloads, await self._base_identity(emit)
            )
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
        if plan.deploy:
            await self.images.check_registry(emit)
        progress.outcomes = await self.publisher.apply(
            plan, await self.repo.commit_time(commit), emit
        )
        if not plan.empty:  # only a deploy or a removal can leave an environment unused
            environment = desired[0].environment if desired else None
            await self.images.prune_environments(
                job.project, environment.image if environment else None, emit
            )
        progress.changed = any(o.action is not NotebookAction.UNCHANGED for o in progress.outcomes)
        try:
            if await self._publish(job, progress.outcomes, emit):
                progress.changed = True
        except UpstreamError as exc:
            if not _reconciling(job):
                raise
            # What runs is right; URL.md follows at a pass that reaches the remote.
            emit(ProgressEvent(Phase.PUBLISHING, f"warning: {URL_FILE} not updated: {exc.message}"))
            progress.changed = True

    async def changed_projects(self, job: JobRecord, progress: JobProgress) -> list[str]:
        """The projects a push touched, from `git diff before..after` in the clone: the
        payload lists at most 20 commits, and a force push rewrites history."""
        tip = await self._fetch(job, progress)
        before, after = job.params.get("before", ""), job.params.get("after", "")
        if not await self.repo.has_commit(after):
            if job.params.get("verify"):  # nothing else told this push is ours
                progress.emit(
                    ProgressEvent(
                        Phase.FETCHING,
                        f"commit {after[:12]} is not in the notebooks repository: a push to"
                        " another repository, ignored",
                    )
                )
                return []
            after = tip  # pushed over again since: the tip includes it, the last push wins
        if set(before) == {"0"}:
            reason = "a new branch"
        elif not await self.repo.has_commit(before):
            reason = f"commit {before[:12]} is not in the clone (history was rewritten)"
        else:
            projects = await self.repo.changed_folders(before, after)
            names = ", ".join(projects) or "none (only files outside project folders)"
            progress.emit(ProgressEvent(Phase.FETCHING, f"changed projects: {names}"))
            return projects
        progress.emit(ProgressEvent(Phase.FETCHING, f"{reason}: updating every project"))
        await self.runtime.resync()
        return await self._every_project(tip)

    async def known_projects(self, job: JobRecord, progress: JobProgress) -> list[str]:
        """Every project in the repository, in containers the gateway owns, or in its records.
        Owned containers without a project or notebook label cannot be placed: they go.
        A pass trusts nothing it has not just read: it starts from the engine's own list."""
        tip = await self._fetch(job, progress)
        await self.runtime.resync()
        for container in await self.runtime.list_notebooks():
            if not (container.project and container.path):
                progress.emit(
                    ProgressEvent(Phase.REMOVING, f"removing unlabelled container {container.name}")
                )
                await self.runtime.remove(container.id)
                progress.changed = True
        return await self._every_project(tip)

    async def _every_project(self, commit: str) -> list[str]:
        names = set(await self.repo.projects(commit))
        names.update(c.project for c in await self.runtime.list_notebooks() if c.project)
        names.update(record.project for record in await self.store.published())
        return sorted(names)

    async def _fetch(self, job: JobRecord, progress: JobProgress) -> str:
        """Fetch the branch. A reconcile pass may work from the last fetched commit when the
        remote is down, so crashed notebooks still come back."""
        emit = progress.emit
        emit(ProgressEvent(Phase.FETCHING, f"fetching {self.repo.branch or 'the default branch'}"))
        try:
            commit = await self.repo.fetch()
        except GitError as exc:
            local = await self.repo.last_fetched()
            if not _reconciling(job) or local is None:
                raise
            emit(ProgressEvent(Phase.FETCHING, f"warning: {exc.message}; using the last fetch"))
            commit = local
        progress.commit = commit
        emit(ProgressEvent(Phase.FETCHING, f"working from commit {commit}"))
        return commit

    async def _base_identity(self, emit: Emit) -> str:
        """The base image's id, part of every image's content hash. Pulled once if missing."""
        image = self.settings.base_image
        found = await self.docker.image_id(image)
        if found is None:
            emit(ProgressEvent(Phase.FETCHING, f"pulling base image {image}"))
            found = await self.docker.pull(image)
        return found

    async def _publish(self, job: JobRecord, outcomes: list[NotebookOutcome], emit: Emit) -> bool:
        """Record the outcomes and commit URL.md if it changed; True when either changed
        (records alone change when a gateway adopts the containers it finds)."""
        recorded = await self.store.replace_project(job.project, outcomes)
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
        return recorded or commit is not None


def _reconciling(job: JobRecord) -> bool:
    """Reconcile passes keep what runs right even while the git remote is away."""
    return job.origin is JobOrigin.RECONCILE or job.action is JobAction.RECONCILE
