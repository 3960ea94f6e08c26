"""RUNTIME=swarm on two nodes: this machine's engine is the manager (with Traefik and the
gateway), a second engine in a network namespace of its own is the worker
(tests/support/swarm.py). Notebooks placed on the worker are pulled there with the credentials
the gateway passes and routed by Traefik on the manager over the overlay network; Swarm
restarts them there, and brings them back on the manager when the worker goes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest

from gateway import naming
from tests.conftest import Gateway, Lane, MakeGateway, job_summary
from tests.integration.test_servers import as_user, call, wait_until
from tests.integration.test_swarm import fit_project, publish_two, services
from tests.support import jupyter
from tests.support.engine import docker
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, notebook
from tests.support.http import until_answers
from tests.support.stack import Registry
from tests.support.swarm import SwarmTraefik, WorkerNode, manager_node, running_on

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def on_both_nodes(swarm: SwarmTraefik, registry: Registry, **more: str) -> dict[str, str]:
    """A gateway whose images every node pulls: from the registry on the manager's end of the
    link, which both engines use without TLS (insecure-registries); the gateway learns that
    from its engine and reads the registry over plain HTTP too."""
    lane = Lane("swarm", swarm.network, swarm.url, swarm.web_port)
    return {
        **lane.env(),
        "REGISTRY_HOST": registry.host,
        "REGISTRY_USERNAME": registry.username,
        "REGISTRY_PASSWORD": registry.password,
        **more,
    }


async def settled(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.5)


async def server_state(gateway: Gateway, name: str) -> str:
    response = await gateway.client.get(f"/servers/{name}", headers=gateway.auth())
    return str((await response.json())["status"]["state"])


async def answering(http: aiohttp.ClientSession, url: str) -> None:
    """Until the URL answers through Traefik (its Swarm provider polls for new tasks)."""
    await until_answers(http, url + "api", timeout=60)


def running_task(worker: WorkerNode, service: str) -> str:
    """The service's running task container on the worker ("" when there is none)."""
    return worker.docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}",
        "--filter", "status=running",
    )  # fmt: skip


async def test_notebooks_on_the_worker_are_pulled_there_routed_restarted_updated_and_removed(
    make_gateway: MakeGateway,
    remote: GitRemote,
    swarm: SwarmTraefik,
    nodes_registry: Registry,
    two_nodes: WorkerNode,
    gitlab: tuple[GitLab, str],
) -> None:
    worker = two_nodes
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-000000000000000")
    bob = lab.user("bob", "glpat-bob-1111111111111111")
    request = fit_project(lab, {alice: DEVELOPER, bob: DEVELOPER})
    # The operator keeps notebooks off the manager (README, "Docker Swarm").
    gateway = await make_gateway(
        **on_both_nodes(swarm, nodes_registry, SWARM_PLACEMENT="node.role==worker"),
        GITLAB_URL=gitlab_url,
    )
    body, urls = await publish_two(gateway)
    found = services(gateway.instance)
    assert len(found) == 2
    for name in found:
        assert running_on(name) == {worker.node_id}, name

    # Pulled on the worker, from a registry that lets no one in without the password: the
    # worker's engine has no credentials of its own, Swarm gave it the gateway's.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{nodes_registry.host}/v2/_catalog") as anonymous,
    ):
        assert anonymous.status == 401
    pulled = worker.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert {nb["image"] for nb in body["notebooks"]} <= set(pulled), pulled

    # Through Traefik on the manager, over the overlay to the worker: the kernel websocket too.
    async with jupyter.session() as http:
        assert await jupyter.execute(http, urls["a.ipynb"], "print(6 * 7)") == "42\n"

    # A user's server lands on the worker as well, behind the gateway's guard.
    status, server = await call(gateway, "POST", "/servers", alice.token, json=request)
    assert status == 201, server
    server = await wait_until(gateway, server["name"], alice.token, "running")
    service = next(
        n
        for n, i in services(gateway.instance).items()
        if naming.LABEL_SERVER in i["Spec"]["Labels"]
    )
    assert running_on(service) == {worker.node_id}
    assert server["volume"]["name"] in worker.docker("volume", "ls", "-q").split()
    async with (
        jupyter.session(headers=as_user(bob.token)) as http,
        http.get(server["url"] + "api") as answer,
    ):
        assert answer.status == 403
    async with jupyter.session(headers=as_user(alice.token)) as http:
        assert await jupyter.execute(http, server["url"], "print('on', 'worker')") == "on worker\n"
    status, _ = await call(gateway, "DELETE", f"/servers/{server['name']}", alice.token)
    assert status == 204

    # Its task killed on the worker: the API says failed (it reads Swarm afresh: the
    # manager's engine sends no events about the worker's containers), then running again.
    name_a = next(
        n for n, i in found.items() if i["Spec"]["Labels"][naming.LABEL_NOTEBOOK] == "a.ipynb"
    )
    first = running_task(worker, name_a)
    assert first
    worker.docker("kill", first)
    seen = set()
    async with asyncio.timeout(90):
        while True:
            seen.add(await server_state(gateway, name_a))
            again = running_task(worker, name_a)
            if again and again != first and await server_state(gateway, name_a) == "running":
                break
            await asyncio.sleep(0.1)
    assert "failed" in seen, seen
    assert running_on(name_a) == {worker.node_id}
    async with jupyter.session() as http:
        await answering(http, urls["a.ipynb"])
        assert await jupyter.execute(http, urls["a.ipynb"], "print('back')") == "back\n"

    # A new version rolls out to the same service, still on the worker, pulled there.
    remote.commit({"climate/a.ipynb": notebook("print('second')")})
    body = await gateway.publish("climate")
    assert {nb["name"]: nb["action"] for nb in body["notebooks"]} == {
        "a.ipynb": "built", "b.ipynb": "unchanged",
    }  # fmt: skip
    assert services(gateway.instance)[name_a]["ID"] == found[name_a]["ID"]
    assert running_on(name_a) == {worker.node_id}
    image = next(nb["image"] for nb in body["notebooks"] if nb["name"] == "a.ipynb")
    assert image in worker.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split()
    async with (
        jupyter.session() as http,
        http.get(urls["a.ipynb"] + "api/contents/a.ipynb") as answer,
    ):
        assert answer.status == 200 and "second" in await answer.text()

    # Deleting the project removes its services, and Swarm their containers on both nodes.
    status, body = await gateway.delete("climate")
    assert status == 200, job_summary(body)
    ours = f"label={naming.LABEL_INSTANCE}={gateway.instance}"

    def nothing_left() -> bool:
        return (
            not services(gateway.instance)
            and not worker.containers(ours)
            and not docker("ps", "-aq", "--filter", ours)
        )

    await settled(nothing_left, 90, "services and task containers removed on both nodes")


async def test_when_the_worker_goes_its_notebooks_come_back_on_the_manager(
    make_gateway: MakeGateway,
    swarm: SwarmTraefik,
    nodes_registry: Registry,
    two_nodes: WorkerNode,
    gitlab: tuple[GitLab, str],
) -> None:
    worker = two_nodes
    resync = 10.0
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-000000000000000")
    request = fit_project(lab, {alice: DEVELOPER})
    gateway = await make_gateway(
        **on_both_nodes(swarm, nodes_registry, CONTAINER_RESYNC_INTERVAL=str(resync)),
        GITLAB_URL=gitlab_url,
    )
    # Placed on the worker: the manager takes no new tasks while it is paused.
    docker("node", "update", "--availability", "pause", manager_node())
    body, _ = await publish_two(gateway)
    code, server = await call(gateway, "POST", "/servers", alice.token, json=request)
    assert code == 201, server
    server = await wait_until(gateway, server["name"], alice.token, "running")
    docker("node", "update", "--availability", "active", manager_node())
    found = services(gateway.instance)
    # service -> the server the API lists it as
    names = {n: i["Spec"]["Labels"].get(naming.LABEL_SERVER, n) for n, i in found.items()}
    assert len(names) == 3 and all(running_on(n) == {worker.node_id} for n in names)
    published = {n for n in names if names[n] == n}
    urls = [nb["url"] for nb in body["notebooks"]]

    # The operator drains the worker, then its machine goes.
    docker("node", "update", "--availability", "drain", worker.node_id)
    manager = manager_node()
    await settled(
        lambda: all(running_on(n) == {manager} for n in published),
        120,
        "published notebooks moved to the manager",
    )
    worker.stop_engine()
    stopped = time.monotonic()
    worker.wait_until("down")

    # What the gateway lists agrees with `docker service ps` within a re-read: the published
    # notebooks run, her server does not (its work area is on the lost node).
    async def agreement() -> tuple[dict[str, bool], dict[str, bool]]:
        response = await gateway.client.get("/servers", headers=gateway.auth())
        listed = (await response.json())["servers"]
        said = {name: view["status"]["state"] == "running" for name, view in listed.items()}
        return said, {server: bool(running_on(service)) for service, server in names.items()}

    while (views := await agreement())[0] != views[1]:
        assert time.monotonic() < stopped + resync + 5, views
        await asyncio.sleep(0.5)
    assert views[1] == {server: service in published for service, server in names.items()}

    async with jupyter.session() as http:
        for url in urls:
            await answering(http, url)
        assert await jupyter.execute(http, urls[0], "print('here')") == "here\n"
    # She is told why, in Swarm's words.
    code, server = await call(gateway, "GET", f"/servers/{server['name']}", alice.token)
    assert server["status"]["state"] == "failed", server
    assert "no node can run the server now: no suitable node" in server["status"]["message"]
