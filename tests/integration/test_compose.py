"""docker-compose.yml run for real, the way the README's "Deployment with docker-compose" says,
word for word: its shell blocks are read from the README and run, with Debian's
docker-compose (Compose 1.29), on a copy of the repository. The two images that cannot be
pulled here are stand-ins under the file's names (tests/support/standins.py). One full
publish goes through the stack: a notification, the image in the compose registry, the URL
through the compose Traefik, and URL.md; then the README's way down."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack, job_summary
from tests.support.engine import docker, remove_instance, remove_services
from tests.support.git_http import git_http_app
from tests.support.gitrepo import GitRemote, notebook
from tests.support.standins import standin_images
from tests.support.swarm import (
    MANAGER_ADDRESS,
    SwarmTraefik,
    WorkerNode,
    running_on,
    swarm_host_address,
)
from tests.support.threaded import ThreadedServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

ROOT = Path(__file__).parents[2]
SECTION = "## Deployment with docker-compose"
# What the compose file needs of the repository: itself, the gateway's build, Traefik's file.
FILES = [
    "docker-compose.yml", "docker-stack.yml", "Dockerfile", ".dockerignore", ".env.example",
    "pyproject.toml", "README.md", "gateway", "traefik", "registry",
]  # fmt: skip
PROJECT = "notebook-gateway"  # COMPOSE_PROJECT_NAME in .env.example
INSTANCE = "nbgw"  # GATEWAY_INSTANCE's default, which the README's way down names
DOMAIN = "compose.localhost"


def readme_blocks(title: str = SECTION) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(title) :]
    section = section[: section.index("\n## ", len(title))]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def deployment_copy(where: Path) -> None:
    where.mkdir()
    for name in FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, where / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, where / name)


def operator_env(where: Path, stack: Stack, auth_token: str, git_url: str, token: str) -> None:
    """.env as the README's comment on `cp .env.example .env` asks, for this machine."""
    set_env(
        where / ".env",
        {
            "AUTH_TOKEN": auth_token,
            "GATEWAY_URL": "http://127.0.0.1:3000",
            "GITLAB_REPO_URL": git_url,
            "GITLAB_ACCESS_TOKEN": token,
            "BASE_DOMAIN": DOMAIN,
            "PUBLIC_SCHEME": "http",
            "BASE_IMAGE": stack.base_image,
            "PYTHON_IMAGE": stack.base_image,  # nothing can be pulled here
        },
    )


def sh(script: str, where: Path, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["sh", "-e", "-c", script], cwd=where, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, (script, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


def set_env(env_file: Path, values: dict[str, str]) -> None:
    """What an operator does to .env: change the lines that are there, add the others."""
    lines = env_file.read_text().splitlines()
    for key, value in values.items():
        found = [i for i, line in enumerate(lines) if re.match(rf"#?\s*{key}=", line)]
        if found:
            lines[found[0]] = f"{key}={value}"
        else:
            lines.append(f"{key}={value}")
    env_file.write_text("\n".join(lines) + "\n")


async def test_the_compose_file_publishes_a_notebook_as_the_readme_says(
    stack: Stack, remote: GitRemote, tmp_path: Path
) -> None:
    up, down = readme_blocks()
    first, rest = up.split("\n", 1)
    assert first.startswith("cp .env.example .env")
    where = tmp_path / "deploy"
    deployment_copy(where)
    remote.commit({"climate/intro.ipynb": notebook("print(6 * 7)")})
    # The notebooks repository over HTTP with a token, where the gateway's container reaches
    # it: the host's address on Docker's default bridge (this machine only).
    bridge = docker("network", "inspect", "bridge", "--format", GATEWAY_OF)
    token = "glpat-compose-" + secrets.token_hex(8)
    git_server = ThreadedServer(git_http_app(remote.bare.parent, token), host=bridge)
    git_url = git_server.start()
    auth_token = secrets.token_urlsafe(24)
    with standin_images(tmp_path, stack.base_image):
        try:
            sh(first, where)
            operator_env(where, stack, auth_token, f"{git_url}/{remote.bare.name}", token)
            sh(rest, where, timeout=1200)
            await publish_through_the_stack(auth_token, registry_password(where), remote)
        finally:
            log = subprocess.run(
                ["docker-compose", "logs", "--no-color", "gateway"],
                cwd=where, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            try:
                sh(down, where, timeout=300)
                ours = f"label=com.docker.compose.project={PROJECT}"
                assert docker("ps", "-aq", "--filter", ours) == ""
                assert docker("network", "ls", "-q", "--filter", f"name=^{PROJECT}$") == ""
            finally:
                git_server.stop()
                remove_instance(INSTANCE)
                sh("docker-compose down --volumes --rmi local || true", where, timeout=300)
                docker("rmi", "-f", "notebook-gateway:latest", check=False)
            print(log.stdout[-5000:])


async def test_the_stack_file_publishes_a_notebook_on_a_swarm_as_the_readme_says(
    stack: Stack, remote: GitRemote, tmp_path: Path, swarm: SwarmTraefik, two_nodes: WorkerNode
) -> None:
    """The README's Swarm steps on two nodes: this engine is the manager (MANAGER_IP is its
    end of the link to the worker, which the fixtures init and join as the README's first two
    lines say), the gateway's image pushed to this run's registry in place of
    registry.example.org. The notebook lands on the worker, which pulls it from the stack's
    registry on the manager."""
    setup = readme_blocks()[0].rsplit("\n", 2)[0]  # compose's lines but `up`
    assert "docker-compose up" not in setup and "htpasswd" in setup
    steps, down = readme_blocks("## Docker Swarm: notebooks across several machines")
    init, join, steps = steps.split("\n", 2)
    assert init.startswith("docker swarm init --advertise-addr MANAGER_IP")
    assert join.startswith("docker swarm join --token … MANAGER_IP:2377")
    steps = steps.replace("registry.example.org", stack.registry.host)
    steps = steps.replace("MANAGER_IP", MANAGER_ADDRESS)
    where = tmp_path / "deploy"
    deployment_copy(where)
    remote.commit({"climate/intro.ipynb": notebook("print(6 * 7)")})
    token = "glpat-stack-" + secrets.token_hex(8)
    auth_token = secrets.token_urlsafe(24)
    config = tmp_path / "docker-config"  # the operator's `docker login` to their registry
    subprocess.run(
        ["docker", "--config", str(config), "login", "-u", stack.registry.username,
         "--password-stdin", stack.registry.host],
        input=stack.registry.password, text=True, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    env = {
        "DOCKER_CONFIG": str(config),
        "DOCKER_BUILDKIT": "0",  # Debian's engine has no BuildKit
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # notebook-gateway
    }
    gateway_image = f"{stack.registry.host}/notebook-gateway:latest"
    with standin_images(tmp_path, stack.base_image):
        # Overlay containers reach the host on the bridge Swarm gives them a way out through.
        git_server = ThreadedServer(
            git_http_app(remote.bare.parent, token), host=swarm_host_address()
        )
        git_url = git_server.start()
        try:
            sh(setup, where)
            operator_env(where, stack, auth_token, f"{git_url}/{remote.bare.name}", token)
            sh(steps, where, timeout=1200, env=env)
            await publish_through_the_stack(auth_token, registry_password(where), remote)
            service = f"{INSTANCE}-intro--climate"
            assert set(_services(f"label=notebook-gateway.instance={INSTANCE}")) == {service}
            # On the worker (SWARM_PLACEMENT), pulled there from MANAGER_IP:5000.
            assert running_on(service) == {two_nodes.node_id}
            image = docker("service", "inspect", "--format", IMAGE_OF, service).partition("@")[0]
            assert image.startswith(f"{MANAGER_ADDRESS}:5000/{INSTANCE}/climate/intro:"), image
            assert image in two_nodes.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
        finally:
            tasks = docker("stack", "ps", "--no-trunc", PROJECT, check=False)
            logs = subprocess.run(
                ["docker", "service", "logs", "--tail", "60", f"{PROJECT}_gateway"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            print(tasks, logs.stdout[-5000:], logs.stderr[-3000:])
            try:
                sh(down, where, timeout=300, env=env)
                async with asyncio.timeout(120):
                    while True:
                        left = docker("ps", "-aq", "--filter", f"label={STACK_LABEL}={PROJECT}")
                        networks = docker("network", "ls", "-q", "--filter", f"name={PROJECT}")
                        if not left and not networks:
                            break
                        await asyncio.sleep(1)
            finally:
                git_server.stop()
                remove_services(INSTANCE)
                remove_instance(INSTANCE)
                for volume in ("gateway-state", "registry-data"):
                    docker("volume", "rm", "-f", f"{PROJECT}_{volume}", check=False)
                docker("rmi", "-f", gateway_image, check=False)


STACK_LABEL = "com.docker.stack.namespace"
IMAGE_OF = "{{.Spec.TaskTemplate.ContainerSpec.Image}}"
GATEWAY_OF = "{{(index .IPAM.Config 0).Gateway}}"


def _services(*filters: str) -> list[str]:
    found = docker("service", "ls", "--format", "{{.Name}}", *(f"--filter={f}" for f in filters))
    return found.split()


def registry_password(where: Path) -> str:
    found = re.search(r"^REGISTRY_PASSWORD=(.+)$", (where / ".env").read_text(), re.M)
    assert found and found.group(1) != "the-password-in-registry/htpasswd"
    return found.group(1)


async def publish_through_the_stack(auth_token: str, password: str, remote: GitRemote) -> None:
    domain = DOMAIN
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        health = ""
        try:
            async with asyncio.timeout(300):
                while True:
                    try:
                        async with http.get("http://127.0.0.1:3000/health") as answer:
                            health = await answer.text()
                            if answer.status == 200:
                                break
                    except aiohttp.ClientError as exc:
                        health = repr(exc)
                    await asyncio.sleep(1)
        except TimeoutError:
            raise AssertionError(f"the gateway never became healthy: {health}") from None
        headers = {"Authorization": f"Bearer {auth_token}"}
        async with http.post(
            "http://127.0.0.1:3000/projects",
            json={"project": "climate", "action": "update"},
            headers=headers,
        ) as answer:
            body = await answer.json()
            assert answer.status == 200, job_summary(body)
        url = body["notebooks"][0]["url"]
        assert url == f"http://intro--climate.{domain}/", url
        # Through the compose Traefik on port 80, by the notebook's host name.
        async with http.get(
            "http://127.0.0.1/api/contents/intro.ipynb",
            headers={"Host": f"intro--climate.{domain}"},
        ) as answer:
            assert answer.status == 200
            assert "print(6 * 7)" in await answer.text()
        # The image is in the compose registry, behind its password.
        async with http.get("http://127.0.0.1:5000/v2/_catalog") as answer:
            assert answer.status == 401
        basic = base64.b64encode(f"pusher:{password}".encode()).decode()
        login = {"Authorization": f"Basic {basic}"}
        async with http.get("http://127.0.0.1:5000/v2/_catalog", headers=login) as answer:
            catalog = await answer.json()
        assert f"{INSTANCE}/climate/intro" in catalog["repositories"], catalog
    assert f"<{url}>" in (remote.read("URL.md") or "")
