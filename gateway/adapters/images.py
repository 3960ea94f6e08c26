"""The Docker engine's images, through aiodocker: build, pull, push and removal. Build and push
streams are checked for in-band errors. Where notebooks run is the runtimes' (runtimes/)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import aiodocker
import aiohttp
from aiodocker.utils import compose_auth_header

from gateway import naming
from gateway.adapters.engine import engine_call, log_lines
from gateway.adapters.registry import RegistryAuth, registry_hostname, speaks_plain_http
from gateway.errors import DockerError, NotebookFailed, RegistryError
from gateway.models import BuildLimits

log = logging.getLogger(__name__)


BUILD_LOG_TAIL = 40
# The classic builder names the image each step produced: " ---> 1a2b3c4d5e6f".
_LAYER = re.compile(r"^\s*---> ([0-9a-f]{12})$")
LineSink = Callable[[str], None]


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

    @engine_call("reading the engine's registry settings")
    async def pushes_without_tls(self, server: str) -> bool:
        """Whether the engine pushes to this registry (host[:port]) over plain HTTP, so the
        gateway may read it the same way."""
        info = await self.client.system.info()
        try:
            found = await asyncio.get_running_loop().getaddrinfo(registry_hostname(server), None)
            addresses = sorted({str(entry[4][0]) for entry in found})
        except OSError:
            addresses = []
        return speaks_plain_http(info.get("RegistryConfig") or {}, server, addresses)

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

    @engine_call("looking up an image")
    async def image_available(self, ref: str, auth: RegistryAuth | None = None) -> bool:
        """Whether the engine has the image or could pull it: its registry knows the tag
        (the engine asks it, with `auth` if given; GET /distribution/{name}/json)."""
        if await self.image_id(ref) is not None:
            return True
        headers = {}
        if auth is not None:
            headers["X-Registry-Auth"] = compose_auth_header(auth.header(), auth.server)
        try:
            await self.client._query_json(f"distribution/{ref}/json", headers=headers)
        except aiodocker.DockerError as exc:
            # The engine answers 401/403 when the registry refuses, and 404 or 500 (with the
            # registry's word) when it does not know the name or the tag.
            if exc.status in (400, 401, 403, 404, 500):
                return False
            raise DockerError(f"cannot look up image {ref}: {exc.message}") from None
        return True

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
        limits: BuildLimits,
        on_line: LineSink,
        install: list[str] | None = None,
    ) -> None:
        """Build from a tar context, then (with `install`) run that command in a container
        held to the build's limits and commit the result as the image. The engine's classic
        builder cannot limit processes, so nothing that runs a repository's code runs in it.
        Raise NotebookFailed with the log's tail on any error."""
        tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)

        def output(line: str) -> None:
            tail.append(line)
            on_line(line)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.timeout
        staged = f"{image}-setup" if install else image
        await self._build(staged, context, labels, limits.timeout, output, tail)
        if install is None:
            return
        try:
            await self._install(staged, image, install, limits, deadline - loop.time(), output)
        except NotebookFailed as failure:
            failure.log = list(tail)
            raise
        finally:
            with contextlib.suppress(aiodocker.DockerError):  # the image keeps its layers
                await self.client.images.delete(staged)

    async def _build(
        self,
        image: str,
        context: IO[bytes],
        labels: Mapping[str, str],
        timeout: float,
        output: LineSink,
        tail: deque[str],
    ) -> None:
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
                    output(line)
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

    async def _install(
        self,
        staged: str,
        image: str,
        command: list[str],
        limits: BuildLimits,
        timeout: float,
        output: LineSink,
    ) -> None:
        """Run `command` on the staged image, unprivileged, with the limits and no more than
        the default bridge network (the package indexes it names); commit it as `image`."""
        config = (await self.client.images.inspect(staged)).get("Config") or {}
        seen = _Processes(limits.pids)

        def heard(line: str) -> None:
            seen.refused = seen.refused or any(m in line for m in _NO_MORE_PROCESSES)
            output(line)

        # No label of its own: a commit would pass it on to the image. The environment's
        # labels (this gateway's, kind "environment") tell it from any notebook's.
        container = await self.client.containers.create(
            {
                "Image": staged,
                "Cmd": command,
                "HostConfig": {
                    "NetworkMode": "bridge",
                    "Memory": limits.memory,
                    "MemorySwap": limits.memory,  # no swap beyond it
                    "NanoCpus": int(limits.cpus * 1e9),
                    "PidsLimit": limits.pids,
                    "CapDrop": ["ALL"],
                    "SecurityOpt": ["no-new-privileges:true"],
                    "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
                },
            }
        )
        try:
            output(f"installing the requirements: {' '.join(command)}")
            await container.start()
            watching = asyncio.create_task(self._count_processes(container.id, seen))
            try:
                async with asyncio.timeout(max(timeout, 1.0)):
                    async for chunk in container.log(stdout=True, stderr=True, follow=True):
                        for line in log_lines(chunk):
                            heard(line)
                    await container.wait()
            except TimeoutError:
                raise NotebookFailed(
                    "build_failed",
                    "the image build failed: installing the requirements did not finish within"
                    f" {limits.timeout:.0f} s{seen.hint()}",
                ) from None
            finally:
                watching.cancel()
            state = (await container.show()).get("State") or {}
            if state.get("OOMKilled"):
                raise NotebookFailed(
                    "build_failed",
                    "the image build failed: installing the requirements ran out of memory"
                    f" (the build's limit is {limits.memory // 2**20} MiB)",
                )
            if code := int(state.get("ExitCode") or 0):
                raise NotebookFailed(
                    "build_failed",
                    "the image build failed: installing the requirements failed"
                    f" (exit code {code}){seen.hint()}",
                )
            repository, _, tag = image.rpartition(":")
            # The staged image's own configuration: as a Dockerfile step, the install changes
            # files, not how the image runs (nor its labels).
            await container.commit(repository=repository, tag=tag, config=config)
        except aiodocker.DockerError as exc:
            raise NotebookFailed(
                "build_failed",
                f"the image build failed: installing the requirements failed: {exc.message}",
            ) from None
        finally:
            with contextlib.suppress(aiodocker.DockerError):
                await container.delete(force=True, v=True)

    async def _count_processes(self, container_id: str, seen: _Processes) -> None:
        """Keep the most processes the container ran at once: a build that forks without end
        is held at its limit, and may time out before it says so in its output."""
        while True:
            with contextlib.suppress(aiodocker.DockerError, aiohttp.ClientError, OSError):
                stats = await self.client._query_json(
                    f"containers/{container_id}/stats",
                    params={"stream": "false", "one-shot": "true"},
                )
                current = int((stats.get("pids_stats") or {}).get("current") or 0)
                seen.peak = max(seen.peak, current)
            await asyncio.sleep(1.0)

    @engine_call("removing what interrupted builds left")
    async def remove_build_containers(self) -> int:
        """Install containers of builds a stopped gateway could not finish: the only
        containers that run an environment image."""
        labels = [
            f"{naming.LABEL_INSTANCE}={self.instance}",
            f"{naming.LABEL_KIND}={naming.KIND_ENVIRONMENT}",
        ]
        filters = json.dumps({"label": labels})
        found = await self.client.containers.list(all=True, filters=filters)
        for container in found:
            with contextlib.suppress(aiodocker.DockerError):
                await container.delete(force=True, v=True)
        return len(found)

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


# How a process that cannot start another says so: fork(2) and clone(2) fail with EAGAIN.
_NO_MORE_PROCESSES = ("Resource temporarily unavailable", "can't start new thread")


@dataclass
class _Processes:
    """What an install step showed of its processes: whether one could not be started, and
    the most that ran at once."""

    limit: int
    refused: bool = False
    peak: int = 0

    def hint(self) -> str:
        if self.refused or self.peak >= self.limit:
            return f": it could not start more processes (the build's limit is {self.limit})"
        return ""


def _error_text(chunk: Mapping[str, Any]) -> str:
    detail = chunk.get("errorDetail") or {}
    return str(detail.get("message") or chunk.get("error") or "unknown error").strip()
