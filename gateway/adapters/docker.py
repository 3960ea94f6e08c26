"""The Docker engine's images, through aiodocker: build, pull, push and removal. Build and push
streams are checked for in-band errors. Where notebooks run is the runtime's (runtime.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import IO, Any, ParamSpec, TypeVar

import aiodocker
import aiohttp

from gateway import naming
from gateway.adapters.registry import RegistryAuth
from gateway.errors import DockerError, NotebookFailed, RegistryError

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def engine_call(
    what: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Connection failures (the engine stopped or restarted) become a DockerError, so the job
    fails cleanly with docker_error; aiodocker only wraps errors the engine itself reports."""

    def wrap(call: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
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


__all__ = ["DockerEngine", "engine_call", "log_lines"]


class DockerEngine:
    def __init__(self, client: aiodocker.Docker, instance: str) -> None:
        self.client = client
        self.instance = instance

    # -- engine --------------------------------------------------------------------------

    async def ping(self) -> str:
        """The engine's version; DockerError when it does not answer."""
        try:
            version = await self.client.version()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            raise DockerError(f"the Docker engine does not answer: {exc}") from None
        return f"Docker Engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})"

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
                for line in log_lines(chunk.get("stream")):
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
        filters = {
            "label": [
                f"{naming.LABEL_INSTANCE}={self.instance}",
                f"{naming.LABEL_KIND}={naming.KIND_PUBLISHED}",
                f"{naming.LABEL_PROJECT}={project}",
            ]
        }
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


def log_lines(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _error_text(chunk: Mapping[str, Any]) -> str:
    detail = chunk.get("errorDetail") or {}
    return str(detail.get("message") or chunk.get("error") or "unknown error").strip()
