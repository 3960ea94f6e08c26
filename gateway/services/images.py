"""Image supply for every workload: build (or reuse, or pull) an image on the engine, push it
to the registry, check the registry's credentials, and prune images no longer wanted. Both
published notebooks and users' servers get their images here."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO

from gateway import naming
from gateway.adapters.git import NotebookRepo
from gateway.adapters.images import DockerEngine
from gateway.adapters.registry import RegistryAuth, RegistryClient, is_transient
from gateway.errors import NotebookFailed, RegistryError
from gateway.metrics import Metrics
from gateway.models import BuildLimits, Emit, ImageSpec, NotebookAction, Phase, ProgressEvent
from gateway.publish.context_tar import write_context_tar
from gateway.publish.discovery import notebook_problem
from gateway.publish.dockerfile import api_labels
from gateway.retry import with_retries
from gateway.settings import ImageSettings


class ImageSupply:
    def __init__(
        self,
        settings: ImageSettings,
        docker: DockerEngine,
        registry: RegistryClient | None,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.docker = docker
        self.registry = registry
        self.metrics = metrics
        self._build_slots = asyncio.Semaphore(settings.build_concurrency)
        self._push_slots = asyncio.Semaphore(settings.push_concurrency)
        self._in_flight: dict[str, asyncio.Future[NotebookAction]] = {}
        self._first_pushes: dict[str, asyncio.Event] = {}  # environment image -> its first push

    async def check_registry(self, emit: Emit) -> None:
        """Fail fast, before any build, when the registry refuses the credentials; wait out a
        registry that is briefly down."""
        registry = self.registry
        if registry is None or registry.auth is None:
            return
        auth = registry.auth
        await self._with_registry_retries(lambda: self.docker.check_login(auth), emit)

    def auth_for(self, image: str) -> RegistryAuth | None:
        """The gateway's registry credentials, for images in its registry only."""
        registry = self.registry
        if registry is None or not image.startswith(f"{registry.server}/"):
            return None
        return registry.auth

    async def ensure(
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
            await self.ensure(spec.parent, repo, mtime, limits, emit)
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

    async def push(self, spec: ImageSpec, emit: Emit) -> None:
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

    async def prune_notebook(self, project: str, path: str, keep: str | None, emit: Emit) -> None:
        """Every image of a published notebook but `keep`, locally and in the registry. What
        runs is already right, so a registry that refuses is a warning, not a failure."""
        await self.docker.remove_notebook_images(project, path, keep=keep)
        if self.registry is None:
            return
        s = self.settings
        names = naming.notebook_names(s.instance, s.registry_host, project, path)
        repository = names.image_repository.removeprefix(f"{s.registry_server}/")
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

    async def prune_environments(self, project: str, keep: str | None, emit: Emit) -> None:
        """The project's environment images but the one its notebooks are built on now."""
        removed = await self.docker.remove_environment_images(project, keep)
        if removed:
            emit(ProgressEvent(Phase.REMOVING, f"removed {len(removed)} old environment image(s)"))

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


def _notebook_problem(repo: NotebookRepo, blob: str) -> str | None:
    with repo.blob_reader() as read_blob:
        return notebook_problem(read_blob(blob).read())


def _write_context(repo: NotebookRepo, spec: ImageSpec, mtime: int) -> IO[bytes]:
    with repo.blob_reader() as read_blob:
        return write_context_tar(spec.context, read_blob, mtime)
