"""The deployment path: the gateway's own image, built from this repository's Dockerfile, run as
a container next to the Docker socket (as docker-compose.yml does), publishes a notebook."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack, gateway_env, new_instance
from tests.support import jupyter
from tests.support.engine import docker, remove_instance
from tests.support.gitrepo import GitRemote, notebook
from tests.support.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[2]


async def test_gateway_image_publishes_from_a_container(
    stack: Stack, remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit({"climate/intro.ipynb": notebook("print(42)")})
    instance = new_instance(stack)
    image = f"{instance}-gateway:test"
    port = free_port()
    # Nothing can be pulled here, so the local base image stands in for python:3.11-slim.
    base = f"PYTHON_IMAGE={stack.base_image}"
    build = subprocess.run(
        ["docker", "build", "-q", "--build-arg", base, "-t", image, str(ROOT)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    env = gateway_env(
        stack,
        remote,
        Path("/var/lib/notebook-gateway"),
        instance,
        GITLAB_REPO_URL="file:///repositories/remote.git",
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
    )
    name = f"{instance}-gateway"
    try:
        docker(
            "run", "-d", "--name", name, "--network", "host",
            "-v", "/var/run/docker.sock:/var/run/docker.sock",
            "-v", f"{remote.bare.parent}:/repositories",
            *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")],
            image,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{url}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.3)
            else:
                raise AssertionError(docker("logs", name, check=False))
            async with http.post(
                f"{url}/projects",
                json={"project": "climate", "action": "update"},
                headers={"Authorization": f"Bearer {env['AUTH_TOKEN']}"},
            ) as response:
                body = await response.json()
                assert response.status == 200, body
        link = body["notebooks"][0]["url"]
        async with jupyter.session() as http:
            assert await jupyter.execute(http, link, "print(6 * 7)") == "42\n"
        assert "| intro.ipynb |" in (remote.read("URL.md") or "")
    finally:
        print(docker("logs", "--tail", "40", name, check=False))
        docker("rm", "-f", "-v", name, check=False)  # -v: its STATE_DIR volume too
        remove_instance(instance)
        docker("rmi", "-f", image, check=False)
