"""The Docker engine, through aiodocker. Raw API dicts are turned into the project's own
dataclasses here; build and push streams are checked for in-band errors."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, ParamSpec, TypeVar

import aiodocker
import aiohttp

from gateway import naming
from gateway.adapters.containers import (
    Container,
    ContainerIndex,
    ContainerState,
    from_inspect,
    from_summary,
    owned_labels,
)
from gateway.adapters.registry import RegistryAuth
from gateway.errors import DockerError, NotebookFailed, RegistryError
from gateway.models import RunningNotebook

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def engine_call(what: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Connection failures (the engine stopped or restarted) become a DockerError, so the job
    fails cleanly with docker_error; aiodocker only wraps errors the engine itself reports."""

    def wrap(call: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(call)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await call(*args, **kwargs)
            except (aiohttp.ClientError, OSError) as exc:
                raise DockerError(
                    f"the Docker engine stopped answering while {what}: {exc}"
                ) from None

        return guarded

    return wrap


BUILD_LOG_TAIL = 40
# The classic builder names the image each step produced: " ---> 1a2b3c4d5e6f".
_LAYER = re.compile(r"^\s*---> ([0-9a-f]{12})$")
LineSink = Callable[[str], None]


@dataclass(frozen=True)
class ResourceLimits:
    memory: int
    cpus: float
    pids: int


@dataclass(frozen=True)
class ServerContainer:
    """A user server's container, as read back from its labels."""

    id: str
    server: str
    image: str
    user_id: int
    state: str  # the engine's: created, running, restarting, exited, dead, ...


__all__ = ["ContainerState", "DockerEngine", "ResourceLimits", "ServerContainer"]


class DockerEngine:
    def __init__(
        self, client: aiodocker.Docker, instance: str, index: ContainerIndex | None = None
    ) -> None:
        self.client = client
        self.instance = instance
        self.index = index

    # -- engine and network --------------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self.client.version()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            raise DockerError(f"the Docker engine does not answer: {exc}") from None

    @engine_call("checking the network")
    async def ensure_network(self, name: str) -> None:
        try:
            await self.client.networks.get(name)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise DockerError(f"cannot inspect network {name}: {exc.message}") from None
            try:
                await self.client.networks.create(
                    {
                        "Name": name,
                        "Driver": "bridge",
                        "Labels": {naming.LABEL_INSTANCE: self.instance},
                    }
                )
            except aiodocker.DockerError as create_exc:
                if create_exc.status != 409:  # created concurrently
                    raise DockerError(
                        f"cannot create network {name}: {create_exc.message}"
                    ) from None

    # -- images --------------------------------------------------------------------------

    @engine_call("inspecting an image")
    async def image_id(self, ref: str) -> str | None:
        try:
            info = await self.client.images.inspect(ref)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerError(f"cannot inspect image {ref}: {exc.message}") from None
        return str(info["Id"])

    @engine_call("pulling the base image")
    async def pull(self, ref: str, auth: RegistryAuth | None = None) -> str:
        try:
            await self.client.images.pull(ref, auth=auth.header() if auth else None)
        except aiodocker.DockerError as exc:
            raise DockerError(f"image {ref} is not available: {exc.message}") from None
        image = await self.image_id(ref)
        if image is None:
            raise DockerError(f"base image {ref} is not available after pulling it")
        return image

    @engine_call("building an image")
    async def build(
        self,
        image: str,
        context: IO[bytes],
        labels: Mapping[str, str],
        timeout: float,
        on_line: LineSink,
    ) -> None:
        """Build from a tar context; raise NotebookFailed with the log's tail on any error."""
        tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
        layers: list[str] = []

        async def consume() -> None:
            stream = self.client.images.build(
                fileobj=context,
                encoding="identity",
                tag=image,
                labels=dict(labels),
                rm=True,
                forcerm=True,
                stream=True,
            )
            async for chunk in stream:
                for line in _lines(chunk.get("stream")):
                    tail.append(line)
                    on_line(line)
                    if layer := _LAYER.match(line):
                        layers.append(layer.group(1))
                if "error" in chunk:
                    raise NotebookFailed(
                        "build_failed", f"the image build failed: {_error_text(chunk)}", list(tail)
                    )

        try:
            async with asyncio.timeout(timeout):
                await consume()
        except TimeoutError:
            await self._remove_unused(layers)
            raise NotebookFailed(
                "build_failed", f"the image build did not finish within {timeout:.0f} s", list(tail)
            ) from None
        except aiodocker.DockerError as exc:
            await self._remove_unused(layers)
            raise NotebookFailed(
                "build_failed", f"the image build failed: {exc.message}", list(tail)
            ) from None
        except NotebookFailed:
            await self._remove_unused(layers)
            raise
        if await self.image_id(image) is None:
            raise NotebookFailed(
                "build_failed", "the build ended without producing the image", list(tail)
            )

    async def _remove_unused(self, layers: list[str]) -> None:
        """A failed build leaves its intermediate images behind, untagged and unlabelled.
        Remove them, newest first; the engine refuses (409) for layers other images use."""
        for layer in reversed(layers):
            try:
                await self.client.images.delete(layer)
            except aiodocker.DockerError:
                continue

    @engine_call("logging in to the registry")
    async def check_login(self, auth: RegistryAuth) -> None:
        """Fail fast, before any build, when the registry refuses the credentials."""
        try:
            async with asyncio.timeout(60):
                await self.client.auth(**auth.header())
        except TimeoutError:
            raise RegistryError(
                f"registry {auth.server} did not answer the login within 60 s"
            ) from None
        except aiodocker.DockerError as exc:
            raise RegistryError(
                f"login to registry {auth.server} as {auth.username!r} failed: {exc.message}"
            ) from None

    @engine_call("pushing an image")
    async def push(
        self, image: str, auth: RegistryAuth | None, timeout: float, on_line: LineSink
    ) -> None:
        repository, _, tag = image.rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                stream = self.client.images.push(
                    repository, tag=tag, auth=auth.header() if auth else None, stream=True
                )
                async for chunk in stream:
                    if "error" in chunk:
                        raise NotebookFailed(
                            "push_failed", f"pushing {image} failed: {_error_text(chunk)}"
                        )
                    if chunk.get("status") and not chunk.get("progressDetail"):
                        on_line(f"{chunk.get('id', '')} {chunk['status']}".strip())
        except TimeoutError:
            raise NotebookFailed(
                "push_failed", f"pushing {image} did not finish within {timeout:.0f} s"
            ) from None
        except aiodocker.DockerError as exc:
            raise NotebookFailed("push_failed", f"pushing {image} failed: {exc.message}") from None

    @engine_call("removing images")
    async def remove_notebook_images(
        self, project: str, path: str, keep: str | None = None
    ) -> list[str]:
        """Remove this notebook's images (every content hash but `keep`). Images still used by a
        container are left alone."""
        filters = {"label": [*self._owned(), f"{naming.LABEL_PROJECT}={project}"]}
        images = await self.client.images.list(filters=filters)
        mine = [i for i in images if (i.get("Labels") or {}).get(naming.LABEL_NOTEBOOK) == path]
        return await self._remove_images(mine, keep)

    @engine_call("removing images")
    async def remove_environment_images(self, project: str, keep: str | None = None) -> list[str]:
        """Remove the project's environment images but `keep`. Images built on one keep its
        layers: only the name goes."""
        labels = [
            f"{naming.LABEL_INSTANCE}={self.instance}",
            f"{naming.LABEL_KIND}={naming.KIND_ENVIRONMENT}",
            f"{naming.LABEL_PROJECT}={project}",
        ]
        images = await self.client.images.list(filters={"label": labels})
        return await self._remove_images(images, keep)

    async def _remove_images(self, images: list[dict[str, Any]], keep: str | None) -> list[str]:
        removed = []
        for image in images:
            for ref in image.get("RepoTags") or [image["Id"]]:
                if ref == keep:
                    continue
                try:
                    await self.client.images.delete(ref)
                    removed.append(ref)
                except aiodocker.DockerError as exc:
                    if exc.status not in (404, 409):
                        raise DockerError(f"cannot remove image {ref}: {exc.message}") from None
        return removed

    # -- containers ----------------------------------------------------------------------

    @engine_call("listing containers")
    async def containers(self) -> list[Container]:
        """Every container of this gateway: from the index while it follows the engine."""
        if self.index is not None and self.index.live:
            return self.index.containers()
        filters = json.dumps({"label": owned_labels(self.instance)})
        try:
            listed = await self.client.containers.list(all=True, filters=filters)
        except aiodocker.DockerError as exc:
            raise DockerError(f"cannot list containers: {exc.message}") from None
        return [from_summary(c._container) for c in listed]

    async def list_servers(self) -> list[ServerContainer]:
        found = []
        for container in await self.containers():
            labels = container.labels
            if labels.get(naming.LABEL_KIND) != naming.KIND_USER:
                continue
            user_id = labels.get(naming.LABEL_USER_ID, "")
            found.append(
                ServerContainer(
                    id=container.id,
                    server=labels.get(naming.LABEL_SERVER, ""),
                    image=container.image,
                    user_id=int(user_id) if user_id.isdigit() else -1,
                    state=container.state.status,
                )
            )
        return found

    def _owned(self) -> list[str]:
        return [
            f"{naming.LABEL_INSTANCE}={self.instance}",
            f"{naming.LABEL_KIND}={naming.KIND_PUBLISHED}",
        ]

    async def list_notebooks(self, project: str | None = None) -> list[RunningNotebook]:
        found = []
        for container in await self.containers():
            labels = container.labels
            if labels.get(naming.LABEL_KIND) != naming.KIND_PUBLISHED:
                continue
            if project is not None and labels.get(naming.LABEL_PROJECT) != project:
                continue
            found.append(
                RunningNotebook(
                    id=container.id,
                    name=container.name,
                    project=labels.get(naming.LABEL_PROJECT, ""),
                    path=labels.get(naming.LABEL_NOTEBOOK, ""),
                    commit=labels.get(naming.LABEL_COMMIT, ""),
                    content_hash=labels.get(naming.LABEL_CONTENT_HASH, ""),
                    image=container.image,
                    url=labels.get(naming.LABEL_URL, ""),
                    running=container.state.status == "running",
                    status=container.state.describe(),
                )
            )
        return found

    @engine_call("starting a container")
    async def run_notebook(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        hostname: str,
        network: str,
        user: str,
        limits: ResourceLimits,
        command: list[str] | None = None,
        create_as: str | None = None,
    ) -> str:
        """Create and start a notebook container. With create_as, it runs under that name
        until rename_container gives it `name` (which another container still holds)."""
        config: dict[str, Any] = {
            "Image": image,
            **({"Cmd": command} if command else {}),
            "Hostname": hostname[:63],
            "User": user,
            "Labels": {**labels, naming.LABEL_CONTAINER: name},
            "ExposedPorts": {"8888/tcp": {}},
            "HostConfig": {
                "NetworkMode": network,
                "RestartPolicy": {"Name": "unless-stopped"},
                "Memory": limits.memory,
                "MemorySwap": limits.memory,  # no swap beyond the memory limit
                "NanoCpus": int(limits.cpus * 1e9),
                "PidsLimit": limits.pids,
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges:true"],
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            },
        }
        try:
            container = await self.client.containers.create(config, name=create_as or name)
        except aiodocker.DockerError as exc:
            raise NotebookFailed(
                "start_failed", f"cannot create container {name}: {exc.message}"
            ) from None
        try:
            await container.start()
        except aiodocker.DockerError as exc:
            await self.remove_container(container.id)
            raise NotebookFailed(
                "start_failed", f"cannot start container {name}: {exc.message}"
            ) from None
        await self._reread(container.id)
        return str(container.id)

    @engine_call("renaming a container")
    async def rename_container(self, container_id: str, name: str) -> None:
        try:
            await self.client.containers.container(container_id).rename(name)
        except aiodocker.DockerError as exc:
            raise NotebookFailed(
                "start_failed",
                f"cannot rename container {container_id[:12]} to {name}: {exc.message}",
            ) from None
        await self._reread(container_id)

    @engine_call("inspecting a container")
    async def container_state(self, container_id: str) -> ContainerState | None:
        if self.index is not None and self.index.live:
            known = self.index.get(container_id)
            if known is not None:
                return known.state
        found = await self._reread(container_id)
        return found.state if found else None

    async def _reread(self, container_id: str) -> Container | None:
        """Inspect one container, and let the index know what the gateway itself changed
        before the engine's event arrives."""
        try:
            if self.index is not None:
                return await self.index.refresh(container_id)
            return from_inspect(await self.client.containers.container(container_id).show())
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise DockerError(
                f"cannot inspect container {container_id[:12]}: {exc.message}"
            ) from None

    async def logs_tail(self, container_id: str, lines: int = 30) -> list[str]:
        try:
            chunks = await self.client.containers.container(container_id).log(
                stdout=True, stderr=True, tail=lines
            )
        except (aiodocker.DockerError, aiohttp.ClientError, OSError):
            return []  # only ever used to explain another failure
        return [line for chunk in chunks for line in _lines(chunk)][-lines:]

    @engine_call("stopping a container")
    async def stop_container(self, container_id: str) -> None:
        try:
            await self.client.containers.container(container_id).stop(t=10)
        except aiodocker.DockerError as exc:
            if exc.status not in (304, 404):
                raise DockerError(
                    f"cannot stop container {container_id[:12]}: {exc.message}"
                ) from None
        await self._reread(container_id)

    @engine_call("removing a container")
    async def remove_container(self, container_id: str, graceful: bool = True) -> bool:
        """Stop it (Jupyter shuts its kernels down) and remove it. Stopping first also avoids
        racing the engine's own restart of the container; graceful=False kills it at once, for
        a server that will not stop cleanly. False when the engine cannot remove it now: see
        _set_aside."""
        container = self.client.containers.container(container_id)
        if graceful:
            # 304 (not running), 404 and the errors of dead containers: the delete decides.
            with contextlib.suppress(aiodocker.DockerError):
                await container.stop(t=10)
        try:
            await container.delete(force=True, v=True)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                return await self._set_aside(container_id, exc.message)
        if self.index is not None:
            self.index.forget(container_id)
        return True

    async def _set_aside(self, container_id: str, reason: str) -> bool:
        """A dead container whose file system the engine cannot release (a known overlay2
        problem after engine restarts) keeps its name. Rename it so the name is free; it stays
        labelled, so later reconcile passes try to remove it again."""
        container = self.client.containers.container(container_id)
        try:
            info = await container.show()
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return True
            raise DockerError(f"cannot remove container {container_id[:12]}: {reason}") from None
        state = info.get("State") or {}
        if not (state.get("Dead") or state.get("Status") in ("dead", "removing")):
            raise DockerError(f"cannot remove container {container_id[:12]}: {reason}")
        name = str(info.get("Name", "")).lstrip("/")
        if name and "-dead-" not in name:
            with contextlib.suppress(aiodocker.DockerError):
                await container.rename(naming.fit(f"{name}-dead-{container_id[:12]}"))
                await self._reread(container_id)
        log.warning("container %s is dead and cannot be removed yet: %s", container_id[:12], reason)
        return False


def _lines(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _error_text(chunk: Mapping[str, Any]) -> str:
    detail = chunk.get("errorDetail") or {}
    return str(detail.get("message") or chunk.get("error") or "unknown error").strip()
