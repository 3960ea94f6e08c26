"""Apply a project's plan: supply the images of what changed, roll them out, prove that the
unchanged still answer, remove what is gone.

One broken notebook never stops the others: its failure becomes its outcome.
"""

from __future__ import annotations

import asyncio

from gateway.adapters.git import NotebookRepo
from gateway.adapters.runtimes.base import Runtime
from gateway.errors import GatewayError, NotebookFailed, ProxyError
from gateway.models import (
    BuildLimits,
    DesiredNotebook,
    Emit,
    NotebookAction,
    NotebookOutcome,
    NotebookState,
    Phase,
    ProgressEvent,
    RunningNotebook,
)
from gateway.publish.plan import Deploy, Keep, PublishPlan
from gateway.services.images import ImageSupply
from gateway.services.rollout import Rollout
from gateway.settings import PublishSettings

KEEP_CHECK_TIMEOUT = 15.0

NotebookDeploy = Deploy[DesiredNotebook, RunningNotebook]


class Publisher:
    def __init__(
        self,
        settings: PublishSettings,
        runtime: Runtime,
        repo: NotebookRepo,
        images: ImageSupply,
        rollout: Rollout,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.repo = repo
        self.images = images
        self.rollout = rollout
        self.build_limits = BuildLimits(
            settings.build_memory_limit,
            settings.build_cpu_limit,
            settings.build_pids_limit,
            settings.build_timeout,
        )

    async def apply(self, plan: PublishPlan, mtime: int, emit: Emit) -> list[NotebookOutcome]:
        if (plan.keep or plan.deploy) and not await self.rollout.probe.reachable():
            # Without the proxy nothing can prove it answers; restarting would only do harm.
            raise ProxyError(
                f"Traefik does not answer at {self.settings.traefik_url}; nothing was changed"
            )
        # What changed need not wait for the unchanged to prove they answer.
        try:
            async with asyncio.TaskGroup() as group:
                verifying = group.create_task(self._verify(plan.keep, emit))
                deploying = group.create_task(self._deploy(plan.deploy, mtime, emit))
        except* GatewayError as failures:
            raise failures.exceptions[0] from None
        kept, silent = verifying.result()
        deployed = [*deploying.result(), *await self._deploy(silent, mtime, emit)]
        removed = await self._remove(plan.remove, {o.path for o in [*kept, *deployed]}, emit)
        for outcome in deployed:
            if outcome.state is NotebookState.RUNNING:  # its older images are not needed now
                await self.images.prune_notebook(outcome.project, outcome.path, outcome.image, emit)
        return sorted([*kept, *deployed, *removed], key=lambda o: o.path)

    async def _verify(
        self, keep: list[Keep[DesiredNotebook, RunningNotebook]], emit: Emit
    ) -> tuple[list[NotebookOutcome], list[NotebookDeploy]]:
        """Containers that already run the right content must still prove they answer; the
        silent ones are deployed again (from the image they have)."""
        answering = await asyncio.gather(
            *(self.rollout.answers(k.desired.launch.host, KEEP_CHECK_TIMEOUT) for k in keep)
        )
        kept, silent = [], []
        for item, ok in zip(keep, answering, strict=True):
            if ok:
                emit(ProgressEvent(Phase.READY, "unchanged and answering", item.desired.path))
                kept.append(
                    _outcome(
                        item.desired,
                        NotebookState.RUNNING,
                        NotebookAction.UNCHANGED,
                        item.current.commit,
                    )
                )
            else:
                emit(
                    ProgressEvent(Phase.STARTING, "not answering; restarting it", item.desired.path)
                )
                silent.append(Deploy(item.desired, (item.current,)))
        return kept, silent

    async def _deploy(
        self, deploys: list[NotebookDeploy], mtime: int, emit: Emit
    ) -> list[NotebookOutcome]:
        """Every notebook at once, within the build, push and start limits. A job-level
        failure (the engine gone) cancels the rest.

        Unless the runtime starts images from the registry, the registry gets them once every
        notebook answers: the first upload of an environment compresses hundreds of megabytes,
        and beside the builds and starts it would slow them all down."""
        ordered = sorted(deploys, key=lambda d: d.desired.path)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._deploy_one(item, mtime, emit)) for item in ordered]
            outcomes = [task.result() for task in tasks]
            if not self.runtime.pulls_from_registry:
                async with asyncio.TaskGroup() as group:
                    for item, outcome in zip(ordered, outcomes, strict=True):
                        if outcome.state is NotebookState.RUNNING:
                            group.create_task(self._push_running(item.desired, outcome, emit))
        except* GatewayError as failures:
            raise failures.exceptions[0] from None
        return outcomes

    async def _deploy_one(self, item: NotebookDeploy, mtime: int, emit: Emit) -> NotebookOutcome:
        desired, spec = item.desired, item.desired.spec
        try:
            action = await self.images.ensure(spec, self.repo, mtime, self.build_limits, emit)
            if self.runtime.pulls_from_registry:
                await self.images.push(spec, emit)
        except NotebookFailed as failure:
            return await self._failed(item, failure, emit)  # the previous version serves on

        def starting() -> None:
            emit(ProgressEvent(Phase.STARTING, f"starting {desired.container}", desired.path))

        try:
            rolled = await self.rollout.roll(
                desired.launch,
                "published",
                item.replaced_ids,
                fallback=item.may_fall_back,
                announce=starting,
            )
        except NotebookFailed as failure:
            return await self._failed(item, failure, emit)
        if rolled.failure is None:
            await self._left_behind(item, rolled.handover.id, emit)
            emit(ProgressEvent(Phase.READY, f"answering at {desired.url}", desired.path))
            return _outcome(desired, NotebookState.RUNNING, action, desired.commit)
        if rolled.reverted:
            emit(ProgressEvent(Phase.STARTING, "brought back the previous version", desired.path))
            if await self._any_left(item.replaces):  # an admin may have stopped them all
                # So that the outcome tells the truth.
                await self.rollout.answers(desired.launch.host, KEEP_CHECK_TIMEOUT)
        return await self._failed(item, rolled.failure, emit)

    async def _push_running(
        self, desired: DesiredNotebook, outcome: NotebookOutcome, emit: Emit
    ) -> None:
        try:
            await self.images.push(desired.spec, emit)
        except NotebookFailed as failure:
            emit(ProgressEvent(Phase.FAILED, failure.message, desired.path))
            outcome.state, outcome.reason = NotebookState.FAILED, failure.reason
            outcome.message = f"running, but not in the registry: {failure.message}"

    async def _remove(
        self, gone: list[RunningNotebook], still_wanted: set[str], emit: Emit
    ) -> list[NotebookOutcome]:
        """Containers of notebooks no longer wanted (and duplicates) go; so do the images of
        notebooks that are gone altogether."""
        for container in gone:
            emit(
                ProgressEvent(
                    Phase.REMOVING, f"removing container {container.name}", container.path
                )
            )
            await self._remove_container(container, emit)
        removed = []
        for project, path in sorted(
            {(c.project, c.path) for c in gone if c.path not in still_wanted}
        ):
            await self.images.prune_notebook(project, path, None, emit)
            removed.append(
                NotebookOutcome(project, path, NotebookState.REMOVED, NotebookAction.REMOVED)
            )
        return removed

    async def _remove_container(self, container: RunningNotebook, emit: Emit) -> None:
        if not await self.runtime.remove(container.id):
            emit(
                ProgressEvent(
                    Phase.REMOVING,
                    f"warning: the Docker engine cannot remove the dead container {container.name}"
                    " yet; it is set aside and removed by a later reconcile",
                    container.path,
                )
            )

    async def _any_left(self, containers: tuple[RunningNotebook, ...]) -> bool:
        return any([await self.runtime.state(c.id) is not None for c in containers])

    async def _left_behind(self, item: NotebookDeploy, new_id: str, emit: Emit) -> None:
        for old in item.replaces:
            if old.id != new_id and await self.runtime.state(old.id) is not None:
                emit(
                    ProgressEvent(
                        Phase.REMOVING,
                        f"warning: {old.name} cannot be removed yet; a later reconcile will",
                        old.path,
                    )
                )

    async def _failed(
        self, item: NotebookDeploy, failure: NotebookFailed, emit: Emit
    ) -> NotebookOutcome:
        """The outcome of a notebook whose new version could not be built or started, which
        says whether the previous version still serves."""
        emit(ProgressEvent(Phase.FAILED, failure.message, item.desired.path))
        serving: RunningNotebook | None = None
        for old in item.replaces:
            state = await self.runtime.state(old.id)
            if state is not None and state.running:
                serving = old
                break
        message = failure.message
        if serving is not None:
            message += f"; the previous version (commit {serving.commit[:8]}) is still served"
        return NotebookOutcome(
            project=item.desired.project,
            path=item.desired.path,
            state=NotebookState.FAILED,
            action=NotebookAction.NONE,
            url=serving.url if serving else "",
            image=item.desired.image,
            commit=serving.commit if serving else item.desired.commit,
            reason=failure.reason,
            message=message,
            log=failure.log,
        )


def _outcome(
    desired: DesiredNotebook, state: NotebookState, action: NotebookAction, commit: str
) -> NotebookOutcome:
    return NotebookOutcome(
        project=desired.project,
        path=desired.path,
        state=state,
        action=action,
        url=desired.url,
        image=desired.image,
        commit=commit,
    )
