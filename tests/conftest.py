"""Fixtures for tests against the real parts: Docker engine, registry, Traefik and git.

The Docker engine and the base image are provisioned by `make test` (scripts/stack.sh); this
file starts a registry and a Traefik of its own on free loopback ports, and gives every test a
gateway instance of its own whose containers, images and state are removed afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import naming
from gateway.adapters.runtimes.docker import ContainerIndex
from gateway.settings import Settings
from gateway.web.app import create_app
from tests.support.engine import (
    docker,
    images_of_run,
    owned_containers,
    remove_containers,
    remove_images,
    remove_instance,
    remove_network,
)
from tests.support.gitlab_server import GitLab
from tests.support.gitrepo import GitRemote
from tests.support.http import job_finished, until
from tests.support.stack import Registry, Traefik, free_port, gateway_environment, stop
from tests.support.swarm import (
    MANAGER_ADDRESS,
    SwarmTraefik,
    WorkerNode,
    manager_node,
    one_node_swarm,
    swarm_host_address,
    swarm_traefik,
    worker_node,
)

BASE_IMAGE = os.environ.get("TEST_BASE_IMAGE", "notebook-gateway/base:latest")


ContainerView = dict[str, tuple[str, str]]  # id -> (name, state)


def docker_ps(instance: str) -> ContainerView:
    """The containers a gateway instance runs, as `docker ps` sees them."""
    out = docker(
        "ps", "-a", "--no-trunc",
        "--filter", f"label={naming.LABEL_INSTANCE}={instance}",
        "--filter", f"label={naming.LABEL_CONTAINER}",
        "--format", "{{.ID}} {{.Names}} {{.State}}",
    )  # fmt: skip
    return {i: (n, s) for i, n, s in (line.split() for line in out.splitlines())}


def indexed(index: ContainerIndex) -> ContainerView:
    return {c.id: (c.name, c.state.status) for c in index.containers()}


async def agrees(index: ContainerIndex, instance: str) -> ContainerView:
    """Wait (briefly) until the index has caught up with the engine's events."""
    async with asyncio.timeout(15):
        while True:
            truth = docker_ps(instance)
            if index.live and indexed(index) == truth:
                return truth
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class EngineEvent:
    type: str  # container, image, network, ...
    action: str  # create, start, destroy, tag, push, ...
    name: str
    labels: dict[str, str]


def engine_events(instance: str, since: float, until: float) -> list[EngineEvent]:
    """What the Docker engine itself reports about one gateway instance's containers and
    images between two moments: the ground truth of what an operation did."""
    out = docker(
        "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--format", "{{json .}}"
    )
    found = []
    for line in out.splitlines():
        event = json.loads(line)
        attributes = dict(event.get("Actor", {}).get("Attributes") or {})
        name = attributes.get("name", "")
        if attributes.get(naming.LABEL_INSTANCE) == instance or f"/{instance}/" in name:
            found.append(EngineEvent(event["Type"], event["Action"], name, attributes))
    return found


@dataclass
class Stack:
    run_id: str
    network: str
    base_image: str
    registry: Registry
    traefik: Traefik


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        docker("version", "--format", "{{.Server.Version}}")
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.fail(f"Docker is not running; `make test` starts it ({exc})", pytrace=False)
    try:
        docker("image", "inspect", BASE_IMAGE)
    except RuntimeError:
        pytest.fail(f"base image {BASE_IMAGE} is missing; `make test` builds it", pytrace=False)
    run_id = "t" + secrets.token_hex(3)
    network = f"{run_id}-net"
    root = tmp_path_factory.mktemp("stack")
    docker("network", "create", "--label", f"{naming.LABEL_INSTANCE}={run_id}", network)
    registry = traefik = None
    try:
        registry = Registry.start(root / "registry")
        traefik = Traefik.start(root / "traefik", network)
        yield Stack(run_id, network, BASE_IMAGE, registry, traefik)
    finally:
        for process in (traefik, registry):
            if process is not None:
                stop(process.process)
        # Anything a test of this run left behind, whatever its instance.
        leftovers = docker("ps", "-aq", "--filter", f"network={network}", check=False)
        remove_containers(leftovers.split())
        remove_images(images_of_run(run_id))
        remove_network(network)


@pytest.fixture(scope="session")
def swarm(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmTraefik]:
    """A one-node Swarm with its own Traefik, for the tests that ask for it (left at the end)."""
    root = tmp_path_factory.mktemp("swarm")
    with one_node_swarm(), swarm_traefik(root, stack.registry, f"{stack.run_id}s") as traefik:
        yield traefik


@pytest.fixture(scope="session")
def nodes_registry(
    swarm: SwarmTraefik, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """A registry every node of the test Swarm pulls from under one name: on the manager's
    end of the link to the second node."""
    registry = Registry.start(tmp_path_factory.mktemp("nodes-registry"), MANAGER_ADDRESS)
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def worker(
    swarm: SwarmTraefik, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerNode]:
    """A second engine joined to the test Swarm as a worker, for one module's tests: the
    other modules' Swarm tests keep one node."""
    root = tmp_path_factory.mktemp("worker")
    with worker_node(root, Path(f"/run/{stack.run_id}-worker")) as node:
        yield node


@pytest.fixture
def two_nodes(worker: WorkerNode) -> Iterator[WorkerNode]:
    """Both nodes up and taking tasks when the test starts, and again after it (a test may
    drain the worker, stop its engine, or pause the manager)."""

    def both_active() -> None:
        if not worker.engine_running:
            worker.start_engine()
        worker.wait_until("ready")
        for node in (manager_node(), worker.node_id):
            docker("node", "update", "--availability", "active", node)

    both_active()
    yield worker
    both_active()


@dataclass(frozen=True)
class Lane:
    """Where a test's notebooks run (RUNTIME), and the Traefik that routes to them."""

    runtime: str
    network: str
    traefik_url: str
    web_port: int

    def env(self) -> dict[str, str]:
        return {
            "RUNTIME": self.runtime,
            "DOCKER_NETWORK": self.network,
            "TRAEFIK_URL": self.traefik_url,
            "PUBLIC_PORT": str(self.web_port),
        }


@pytest.fixture(params=["docker", "swarm"])
def lane(request: pytest.FixtureRequest, stack: Stack) -> Lane:
    """Run the test once with containers on the engine, once with services on a Swarm."""
    if request.param == "docker":
        return Lane("docker", stack.network, stack.traefik.url, stack.traefik.web_port)
    traefik: SwarmTraefik = request.getfixturevalue("swarm")
    return Lane("swarm", traefik.network, traefik.url, traefik.web_port)


@pytest.fixture
async def gitlab(tmp_path: Path) -> AsyncIterator[tuple[GitLab, str]]:
    """A GitLab-compatible test server (users, projects, their git remotes)."""
    lab = GitLab(tmp_path / "gitlab")
    server = TestServer(lab.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield lab, f"http://127.0.0.1:{server.port}"
    finally:
        await server.close()


@pytest.fixture
async def gitlab_under_path(tmp_path: Path) -> AsyncIterator[tuple[GitLab, str]]:
    """The same, installed under a relative URL root (/gitlab), as GitLab may be."""
    lab = GitLab(tmp_path / "gitlab", prefix="/gitlab")
    server = TestServer(lab.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield lab, f"http://127.0.0.1:{server.port}/gitlab"
    finally:
        await server.close()


@pytest.fixture
def remote(tmp_path: Path) -> GitRemote:
    return GitRemote(tmp_path / "git")


_instances = itertools.count()


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    settings: Settings
    remote: GitRemote

    @property
    def instance(self) -> str:
        return self.settings.instance

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.settings.auth_token.get_secret_value()}"}

    async def notify(self, project: str, *, wait: bool = True) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(
            "/projects" + ("" if wait else "?wait=false"),
            json={"project": project, "action": "update"},
            headers=self.auth(),
        )
        return response.status, await response.json()

    async def publish(self, project: str) -> dict[str, Any]:
        """Publish the project from the repository as it is, and check that it worked: the
        finished job."""
        status, body = await self.notify(project)
        assert status == 200, job_summary(body)
        return body

    async def wait_for_job(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        """Poll GET /jobs/{id} as a CI job would, until the job has finished."""

        async def read() -> dict[str, Any]:
            response = await self.client.get(f"/jobs/{job_id}", headers=self.auth())
            job: dict[str, Any] = await response.json()
            assert response.status == 200, job
            return job

        return await until(read, job_finished, timeout, every=0.5)

    async def delete(self, project: str) -> tuple[int, dict[str, Any]]:
        response = await self.client.delete(
            "/projects", json={"project": project}, headers=self.auth()
        )
        return response.status, await response.json()


MakeGateway = Callable[..., Awaitable[Gateway]]


def new_instance(stack: Stack) -> str:
    return f"{stack.run_id}{next(_instances)}"


@pytest.fixture
def instance(stack: Stack) -> Iterator[str]:
    """An instance name for a test's own containers and images, all removed afterwards."""
    name = new_instance(stack)
    try:
        yield name
    finally:
        remove_instance(name)


def gateway_env(
    stack: Stack, remote: GitRemote, state_dir: Path, instance: str, **overrides: str
) -> dict[str, str]:
    """The environment of a gateway wired to the test stack, as an operator would write it."""
    return gateway_environment(
        stack.registry, stack.traefik, stack.base_image, stack.network, remote.url, state_dir,
        instance,
        **{"GATEWAY_URL": "http://gateway.test:3000", "NOTEBOOK_READY_TIMEOUT": "90", **overrides},
    )  # fmt: skip


@pytest.fixture
async def make_gateway(
    request: pytest.FixtureRequest,
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    stack: Stack,
    remote: GitRemote,
    tmp_path: Path,
) -> AsyncIterator[MakeGateway]:
    """Start a gateway (in this process) against the real stack; settings can be overridden
    with environment-variable names, exactly as an operator would."""
    made: list[Gateway] = []

    async def make(**env: str) -> Gateway:
        instance = new_instance(stack)
        # A known port, so Traefik's forward-auth and browsers sent to log in can reach it.
        port = int(env.get("GATEWAY_PORT") or free_port())
        internal = "127.0.0.1"
        if env.get("RUNTIME") == "swarm":
            # Traefik runs as a Swarm service: it reaches the host on the nodes' bridge.
            internal = swarm_host_address()
            env.setdefault("GATEWAY_HOST", "0.0.0.0")
        here = {
            "GATEWAY_PORT": str(port),
            "GATEWAY_URL": f"http://127.0.0.1:{port}",
            "GATEWAY_INTERNAL_URL": f"http://{internal}:{port}",
        }
        values = gateway_env(
            stack, remote, tmp_path / f"state-{instance}", instance, **{**here, **env}
        )
        settings = Settings.from_env(values)
        client = await aiohttp_client(
            create_app(settings),
            server_kwargs={"host": env.get("GATEWAY_HOST", "127.0.0.1"), "port": port},
        )
        gateway = Gateway(client, settings, remote)
        made.append(gateway)
        return gateway

    try:
        yield make
    finally:
        report = getattr(request.node, "rep_call", None)
        for gateway in made:
            if report is not None and report.failed:
                _dump(gateway)
            await gateway.client.close()
            remove_instance(gateway.instance)


def _dump(gateway: Gateway) -> None:
    """On failure, show what the containers said: the quickest way to the cause."""
    for container in owned_containers(gateway.instance):
        state = docker("inspect", "--format", "{{json .State}}", container, check=False)
        logs = subprocess.run(
            ["docker", "logs", "--tail", "60", container],
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"\n--- container {container} state: {state}\n{logs.stdout}{logs.stderr}")
    print("--- URL.md on the remote:\n" + (gateway.remote.read("URL.md") or "(none)"))


def job_summary(body: dict[str, Any]) -> str:
    """Readable assertion message for a job answer."""
    return json.dumps(body, indent=1)[:6000]
