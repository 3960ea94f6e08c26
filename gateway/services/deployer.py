"""Apply a plan: build, push and start what changed, prove it answers, remove what is gone.

One broken notebook never stops the others: its failure becomes its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO

from gateway import naming
from gateway.adapters.git import NotebookRepo
from gateway.adapters.images import DockerEngine
from gateway.adapters.probe import FIRST_PATIENCE, MOST_PATIENCE, TraefikProbe
from gateway.adapters.registry import RegistryClient, is_transient
from gateway.adapters.runtimes.base import Handover, Runtime
from gateway.errors import GatewayError, NotebookFailed, ProxyError, RegistryError
from gateway.metrics import Metrics
from gateway.models import (
    BuildLimits,
    DesiredNotebook,
    Emit,
    ImageSpec,
    NotebookAction,
    NotebookOutcome,
    NotebookState,
    Phase,
    ProgressEvent,
    RunningNotebook,
)
from gateway.publish.context_tar import write_context_tar
from gateway.publish.discovery import notebook_problem
from gateway.publish.dockerfile import api_labels
from gateway.publish.plan import Deploy, Keep, Plan
from gateway.retry import with_retries
from gateway.settings import Settings

LOG_TAIL = 30
KEEP_CHECK_TIMEOUT = 15.0
# Longer than the Swarm provider's poll (traefik-config's swarm_refresh, 1 s).
SWARM_CONFIRM = 1.5


class Deployer:
    def __init__(
        self,
        settings: Settings,
        docker: DockerEngine,
        runtime: Runtime,
        repo: NotebookRepo,
        probe: TraefikProbe,
        registry: RegistryClient | None,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.docker = docker
        self.runtime = runtime
        self.repo = repo
        self.probe = probe
        self.registry = registry
        self._build_slots = asyncio.Semaphore(settings.build_concurrency)
        self._push_slots = asyncio.Semaphore(settings.push_concurrency)
        self._start_slots = asyncio.Semaphore(settings.start_concurrency)
        self._in_flight: dict[str, asyncio.Future[NotebookAction]] = {}
        self._first_pushes: dict[str, asyncio.Event] = {}  # environment image -> its first push
        self.build_limits = BuildLimits(
            settings.build_memory_limit,
            settings.build_cpu_limit,
            settings.build_pids_limit,
            settings.build_timeout,
        )

    async def apply(self, plan: Plan, mtime: int, emit: Emit) -> list[NotebookOutcome]:
        if (plan.keep or plan.deploy) and not await self.probe.reachable():
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
                await self._remove_images(outcome.project, outcome.path, outcome.image, emit)
        return sorted([*kept, *deployed, *removed], key=lambda o: o.path)

    async def _verify(
        self, keep: list[Keep], emit: Emit
    ) -> tuple[list[NotebookOutcome], list[Deploy]]:
        """Containers that already run the right content must still prove they answer; the
        silent ones are deployed again (from the image they have)."""
        answering = await asyncio.gather(
            *(self._answers(k.desired, KEEP_CHECK_TIMEOUT) for k in keep)
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

    async def _deploy(self, deploys: list[Deploy], mtime: int, emit: Emit) -> list[NotebookOutcome]:
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

    async def _deploy_one(self, item: Deploy, mtime: int, emit: Emit) -> NotebookOutcome:
        spec = item.desired.spec
        try:
            action = await self.ensure_image(spec, self.repo, mtime, self.build_limits, emit)
            if self.runtime.pulls_from_registry:
                await self.push_image(spec, emit)
        except NotebookFailed as failure:
            return await self._failed(item, failure, emit)  # the previous version serves on
        launched = time.monotonic()
        try:
            handover = await self._replace(item, emit)
        except NotebookFailed as failure:
            self.observe_launch("published", launched, ok=False)
            return await self._failed(item, failure, emit)
        outcome = await self._await_ready(item, handover, action, emit)
        self.observe_launch("published", launched, ok=outcome.state is NotebookState.RUNNING)
        return outcome

    async def _push_running(
        self, desired: DesiredNotebook, outcome: NotebookOutcome, emit: Emit
    ) -> None:
        try:
            await self.push_image(desired.spec, emit)
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
            await self._remove_images(project, path, None, emit)
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

    async def remove_environments(self, project: str, keep: str | None, emit: Emit) -> None:
        """The project's environment images but the one its notebooks are built on now."""
        removed = await self.docker.remove_environment_images(project, keep)
        if removed:
            emit(ProgressEvent(Phase.REMOVING, f"removed {len(removed)} old environment image(s)"))

    async def check_registry(self, emit: Emit) -> None:
        """Fail fast, before any build, when the registry refuses the credentials; wait out a
        registry that is briefly down."""
        registry = self.registry
        if registry is None or registry.auth is None:
            return
        auth = registry.auth
        await self._with_registry_retries(lambda: self.docker.check_login(auth), emit)

    async def _with_registry_retries(
        self, operation: Callable[[], Awaitable[None]], emit: Emit, notebook: str | None = None
    ) -> None:
        attempts = self.settings.registry_retries

        def transient(exc: Exception) -> bool:
            if isinstance(exc, NotebookFailed):
                return exc.reason == "push_failed" and is_transient(exc.message)
            return isinstance(exc, RegistryError) and is_transient(exc.message)

        def on_retry(attempt: int, exc: Exception, wait: float) -> None:
            message = f"{exc}; retrying in {wait:.1f} s (attempt {attempt + 1} of {attempts})"
            emit(ProgressEvent(Phase.PUSHING, message, notebook))

        await with_retries(
            operation,
            attempts=attempts,
            delay=self.settings.registry_retry_delay,
            transient=transient,
            on_retry=on_retry,
        )

    async def _remove_images(self, project: str, path: str, keep: str | None, emit: Emit) -> None:
        """Every image of the notebook but `keep`, locally and in the registry. What runs is
        already right, so a registry that refuses is a warning, not a failure."""
        await self.docker.remove_notebook_images(project, path, keep=keep)
        if self.registry is None:
            return
        names = naming.notebook_names(
            self.settings.instance, self.settings.registry_host, project, path
        )
        repository = names.image_repository.removeprefix(f"{self.settings.registry_server}/")
        keep_tag = keep.rpartition(":")[2] if keep else None
        try:
            deleted = await self.registry.prune(repository, keep=keep_tag)
        except RegistryError as exc:
            emit(ProgressEvent(Phase.REMOVING, f"warning: {exc.message}", path))
            return
        if deleted:
            emit(
                ProgressEvent(
                    Phase.REMOVING, f"deleted {len(deleted)} old image(s) from the registry", path
                )
            )

    async def ensure_image(
        self, spec: ImageSpec, repo: NotebookRepo, mtime: int, limits: BuildLimits, emit: Emit
    ) -> NotebookAction:
        """Make sure the image is on the engine: already there, pulled from the registry, or
        built from `repo`'s blobs on its environment (ensured the same way first), within
        `limits`. BUILT when it had to be built. Requests for an image already being obtained
        share that one."""
        if await self.docker.image_id(spec.image) is not None:
            return NotebookAction.RESTARTED
        flight = self._in_flight.get(spec.image)
        if flight is None:
            flight = asyncio.ensure_future(self._obtain(spec, repo, mtime, limits, emit))
            self._in_flight[spec.image] = flight
            flight.add_done_callback(lambda _: self._in_flight.pop(spec.image, None))
        else:
            emit(ProgressEvent(Phase.BUILDING, f"waiting for {spec.image}", spec.subject))
        return await asyncio.shield(flight)

    async def _obtain(
        self, spec: ImageSpec, repo: NotebookRepo, mtime: int, limits: BuildLimits, emit: Emit
    ) -> NotebookAction:
        def output(text: str) -> None:
            emit(ProgressEvent(Phase.BUILDING, text, spec.subject, output=True))

        if self.registry is not None and spec.push and await self.registry.has(spec.image):
            emit(
                ProgressEvent(
                    Phase.BUILDING, f"pulling {spec.image} from the registry", spec.subject
                )
            )
            await self.docker.pull(spec.image, self.registry.auth)
            return NotebookAction.RESTARTED
        if spec.notebook_blob is not None:
            problem = await asyncio.to_thread(_notebook_problem, repo, spec.notebook_blob)
            if problem:
                raise NotebookFailed("invalid_notebook", f"{spec.subject}: {problem}")
        if spec.parent is not None:
            await self.ensure_image(spec.parent, repo, mtime, limits, emit)
        async with self._build_slots:
            emit(ProgressEvent(Phase.BUILDING, f"building {spec.image}", spec.subject))
            context = await asyncio.to_thread(_write_context, repo, spec, mtime)
            started, outcome = time.monotonic(), "failed"
            try:
                await self.docker.build(
                    spec.image, context, api_labels(spec.labels), limits, output, spec.install
                )
                outcome = "succeeded"
            finally:
                context.close()
                self.metrics.build_seconds.labels(outcome).observe(time.monotonic() - started)
        return NotebookAction.BUILT

    def observe_launch(self, kind: str, started: float, *, ok: bool) -> None:
        """How long a container took from being asked for to answering (or failing to)."""
        outcome = "succeeded" if ok else "failed"
        self.metrics.launch_seconds.labels(kind, outcome).observe(time.monotonic() - started)

    async def push_image(self, spec: ImageSpec, emit: Emit) -> None:
        """Push to the registry, unless there is none or it has the image already."""
        registry = self.registry
        if registry is None or not spec.push:
            return
        if await registry.has(spec.image):
            emit(
                ProgressEvent(
                    Phase.PUSHING, f"{spec.image} is in the registry already", spec.subject
                )
            )
            return

        def output(text: str) -> None:
            emit(ProgressEvent(Phase.PUSHING, text, spec.subject, output=True))

        async with self._first_push_on(spec, emit), self._push_slots:
            emit(ProgressEvent(Phase.PUSHING, f"pushing {spec.image}", spec.subject))
            await self._with_registry_retries(
                lambda: self.docker.push(
                    spec.image, registry.auth, self.settings.push_timeout, output
                ),
                emit,
                spec.subject,
            )

    @contextlib.asynccontextmanager
    async def _first_push_on(self, spec: ImageSpec, emit: Emit) -> AsyncIterator[None]:
        """The first push of an image on a new environment uploads the environment's layers,
        hundreds of megabytes; pushes side by side would each upload them again. The others
        wait for it (done or failed), then only link the layers the registry has."""
        environment = spec.parent.image if spec.parent is not None else None
        if environment is None:
            yield
        elif (first := self._first_pushes.get(environment)) is not None:
            emit(ProgressEvent(Phase.PUSHING, "waiting for the shared layers", spec.subject))
            await first.wait()
            yield
        else:
            first = self._first_pushes[environment] = asyncio.Event()
            try:
                yield
            finally:
                del self._first_pushes[environment]
                first.set()

    async def _replace(self, item: Deploy, emit: Emit) -> Handover:
        """Start the new version; the old ones stop serving, but stay until it answers."""
        desired = item.desired
        async with self._start_slots:
            emit(ProgressEvent(Phase.STARTING, f"starting {desired.container}", desired.path))
            return await self.runtime.start(
                desired.launch, replaces=[old.id for old in item.replaces]
            )

    async def _await_ready(
        self, item: Deploy, handover: Handover, action: NotebookAction, emit: Emit
    ) -> NotebookOutcome:
        """Answering, the new version takes over for good. Failing, it gives way to the
        previous version, if there is one; without one it is stopped, left for its logs.
        A previous version without a shape was started by a gateway whose Jupyter answered
        anyone who reached it: it never serves again, it goes."""
        desired = item.desired
        fallback = bool(handover.replaces) and all(old.shape for old in item.replaces)
        failure = await self.wait_until_answering(
            handover.id, self._host(desired), stop=not fallback
        )
        if failure is None:
            await self._complete(item, handover, emit)
            emit(ProgressEvent(Phase.READY, f"answering at {desired.url}", desired.path))
            return _outcome(desired, NotebookState.RUNNING, action, desired.commit)
        if fallback:
            emit(ProgressEvent(Phase.STARTING, "bringing back the previous version", desired.path))
            await self.runtime.revert(handover)
            if await self._any_left(item.replaces):  # an admin may have stopped them all
                await self._answers(desired, KEEP_CHECK_TIMEOUT)  # so the outcome tells the truth
        elif handover.replaces:
            await self.runtime.complete(handover)  # the stopped new version keeps its logs
        return await self._failed(item, failure, emit)

    async def _any_left(self, containers: tuple[RunningNotebook, ...]) -> bool:
        return any([await self.runtime.state(c.id) is not None for c in containers])

    async def _complete(self, item: Deploy, handover: Handover, emit: Emit) -> None:
        await self.runtime.complete(handover)
        for old in item.replaces:
            if old.id != handover.id and await self.runtime.state(old.id) is not None:
                emit(
                    ProgressEvent(
                        Phase.REMOVING,
                        f"warning: {old.name} cannot be removed yet; a later reconcile will",
                        old.path,
                    )
                )

    async def wait_until_answering(
        self,
        container_id: str,
        host: str,
        memory_limit: int | None = None,
        stop: bool = True,
    ) -> NotebookFailed | None:
        """Running means answering through Traefik. A container that exits, runs out of
        memory or stays silent past the deadline is stopped (unless `stop` is False), and
        the failure (with the container's log tail) returned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.ready_timeout
        memory = (memory_limit or self.settings.memory_limit) // 2**20
        delay = 0.1  # Jupyter answers within a few seconds: ask often, then back off
        patience = FIRST_PATIENCE
        answering_since: float | None = None
        while True:
            state = await self.runtime.state(container_id)
            failure: NotebookFailed | None = None
            if state is None:
                failure = NotebookFailed("start_failed", "the container was removed while starting")
            elif state.oom_killed:
                failure = NotebookFailed(
                    "out_of_memory", f"the notebook ran out of memory (limit {memory} MiB)"
                )
            elif state.restart_count > 0 or state.status in ("exited", "dead"):
                # While Docker restarts it, the exit code of the failed run is not reliable.
                code = f" with code {state.exit_code}" if state.status in ("exited", "dead") else ""
                reason = f": {state.error}" if state.error else " (see its log)"
                failure = NotebookFailed(
                    "start_failed", f"Jupyter exited{code} while starting{reason}"
                )
            elif state.running:
                asked = loop.time()
                if await self.probe.answers(host, patience):
                    if not self.runtime.pulls_from_registry:
                        return None
                    # Swarm: Traefik's route may still hold the address of a task just
                    # removed until its next poll; an answer counts once answers keep
                    # coming past that poll.
                    answering_since = answering_since or asked
                    if loop.time() - answering_since >= SWARM_CONFIRM:
                        return None
                else:
                    answering_since = None
                if loop.time() - asked >= patience:  # waited out: ask again, more patiently
                    patience = min(patience * 2, MOST_PATIENCE)
            if failure is None and loop.time() > deadline:
                waited = f"within {self.settings.ready_timeout:.0f} s"
                failure = NotebookFailed(
                    "not_ready",
                    f"no node could run it {waited} ({state.error}; see SWARM_PLACEMENT)"
                    if state is not None and state.status == "unplaced"
                    else f"the notebook did not answer through the proxy {waited}",
                )
            if failure is not None:
                failure.log = await self.runtime.logs_tail(container_id, LOG_TAIL)
                if stop:
                    await self.runtime.stop(container_id)
                return failure
            await asyncio.sleep(delay)
            delay = min(delay * 1.2, 1.0)

    async def _answers(self, desired: DesiredNotebook, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self.probe.answers(self._host(desired)):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.5)
        return True

    def _host(self, desired: DesiredNotebook) -> str:
        return f"{desired.host_label}.{self.settings.base_domain}"

    async def _failed(self, item: Deploy, failure: NotebookFailed, emit: Emit) -> NotebookOutcome:
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


def _notebook_problem(repo: NotebookRepo, blob: str) -> str | None:
    with repo.blob_reader() as read_blob:
        return notebook_problem(read_blob(blob).read())


def _write_context(repo: NotebookRepo, spec: ImageSpec, mtime: int) -> IO[bytes]:
    with repo.blob_reader() as read_blob:
        return write_context_tar(spec.context, read_blob, mtime)
