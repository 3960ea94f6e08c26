"""RUNTIME=swarm on a one-node Swarm: notebooks are services routed by Traefik's Swarm provider
(Traefik itself a Swarm service), and the API reads them as it reads containers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from gateway import naming
from gateway.errors import DockerError
from gateway.settings import Settings
from gateway.web.app import create_app
from tests.conftest import Gateway, Lane, MakeGateway, Stack, gateway_env, job_summary
from tests.integration.test_servers import as_user, call, wait_until
from tests.support import jupyter
from tests.support.engine import docker, owned_volumes
from tests.support.gitlab_server import DEVELOPER, GitLab, User
from tests.support.gitrepo import GitRemote, notebook
from tests.support.http import until_answers
from tests.support.stack import free_port
from tests.support.swarm import SwarmTraefik

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def services(instance: str) -> dict[str, dict[str, Any]]:
    """service name -> its inspect output."""
    ids = docker("service", "ls", "-q", "--filter", f"label={naming.LABEL_INSTANCE}={instance}")
    if not ids:
        return {}
    return {
        info["Spec"]["Name"]: info
        for info in json.loads(docker("service", "inspect", *ids.split()))
    }


def running_task_container(service: str) -> str:
    return docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}",
        "--filter", "status=running",
    )  # fmt: skip


async def publish_two(gateway: Gateway) -> tuple[dict[str, Any], dict[str, str]]:
    """climate/a.ipynb and b.ipynb published and running: the job's answer, and each
    notebook's URL by name."""
    gateway.remote.commit(
        {"climate/a.ipynb": notebook("print('a')"), "climate/b.ipynb": notebook("print('b')")}
    )
    body = await gateway.publish("climate")
    assert {nb["state"] for nb in body["notebooks"]} == {"running"}, job_summary(body)
    return body, {nb["name"]: nb["url"] for nb in body["notebooks"]}


def fit_project(lab: GitLab, members: dict[User, int]) -> dict[str, str]:
    """group/analysis with one notebook, and the POST /servers body that starts it."""
    project = lab.project("group/analysis", members)
    sha = project.remote.commit({"notebooks/fit.ipynb": notebook("print('fit', 6 * 7)")})
    return {
        "namespace": "group", "project": "analysis", "commit_sha": sha,
        "notebook": "notebooks/fit.ipynb",
    }  # fmt: skip


async def test_notebooks_run_as_services_that_swarm_restarts_updates_and_removes(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, swarm: SwarmTraefik
) -> None:
    lane = Lane("swarm", swarm.network, swarm.url, swarm.web_port)
    gateway = await make_gateway(**lane.env())
    body, urls = await publish_two(gateway)

    # One service per notebook, one replica, the Traefik labels on the service, the limits
    # as service resources; the registry password is nowhere in what Swarm shows.
    found = services(gateway.instance)
    assert len(found) == 2
    for info in found.values():
        spec = info["Spec"]
        assert spec["Labels"]["traefik.swarm.network"] == swarm.network
        assert "traefik.docker.network" not in spec["Labels"]
        assert spec["Mode"]["Replicated"]["Replicas"] == 1
        limits = spec["TaskTemplate"]["Resources"]["Limits"]
        assert limits["MemoryBytes"] == gateway.settings.memory_limit
        assert limits["NanoCPUs"] == int(gateway.settings.cpu_limit * 1e9)
        assert spec["TaskTemplate"]["ContainerSpec"]["Image"].startswith(stack.registry.host)
        assert stack.registry.password not in json.dumps(info)
    name_a = next(
        name
        for name, info in found.items()
        if info["Spec"]["Labels"][naming.LABEL_NOTEBOOK] == "a.ipynb"
    )

    async with jupyter.session() as http:
        assert await jupyter.execute(http, urls["a.ipynb"], "print(6 * 7)") == "42\n"

    # The servers API lists them; their logs are the services' logs.
    admin = gateway.auth()
    response = await gateway.client.get("/servers", headers=admin)
    listed = (await response.json())["servers"]
    assert {listed[name]["status"]["state"] for name in found} == {"running"}
    response = await gateway.client.get(f"/logs/{name_a}", headers=admin)
    assert response.status == 200
    assert "Jupyter Server" in await response.text()

    # A killed task: Swarm starts another, and the gateway says so meanwhile.
    async def state() -> str:
        response = await gateway.client.get(f"/servers/{name_a}", headers=admin)
        return str((await response.json())["status"]["state"])

    first = running_task_container(name_a)
    docker("kill", first)
    seen = set()
    async with asyncio.timeout(60):
        while True:
            seen.add(await state())
            again = running_task_container(name_a)
            if again and again != first and await state() == "running":
                break
            await asyncio.sleep(0.1)
    assert "failed" in seen, seen
    async with jupyter.session() as http:
        # Traefik's Swarm provider polls: the new task's route comes within a few seconds.
        await until_answers(http, urls["a.ipynb"] + "api", timeout=30)
        assert await jupyter.execute(http, urls["a.ipynb"], "print('back')") == "back\n"

    # A new version updates the same service; the new content is served.
    service_id = found[name_a]["ID"]
    remote.commit({"climate/a.ipynb": notebook("print('second')")})
    body = await gateway.publish("climate")
    actions = {nb["name"]: nb["action"] for nb in body["notebooks"]}
    assert actions == {"a.ipynb": "built", "b.ipynb": "unchanged"}
    after = services(gateway.instance)
    assert after[name_a]["ID"] == service_id
    image = next(nb["image"] for nb in body["notebooks"] if nb["name"] == "a.ipynb")
    assert after[name_a]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == image

    # A deleted notebook loses its service and its line in URL.md.
    remote.commit({"climate/b.ipynb": None}, "Remove b")
    body = await gateway.publish("climate")
    assert set(services(gateway.instance)) == {name_a}
    assert "| b.ipynb |" not in (remote.read("URL.md") or "")
    response = await gateway.client.get("/servers", headers=admin)
    assert set((await response.json())["servers"]) == {name_a}


async def test_swarm_needs_a_manager_and_an_overlay_network(
    stack: Stack, swarm: SwarmTraefik, remote: GitRemote, instance: str, tmp_path: Any
) -> None:
    # The stack's network is a bridge network: services cannot join it.
    values = gateway_env(stack, remote, tmp_path / "state", instance, RUNTIME="swarm")
    app = create_app(Settings.from_env(values))
    runner = web.AppRunner(app)
    with pytest.raises(DockerError, match="attachable overlay network"):
        await runner.setup()
    await runner.cleanup()


async def test_users_servers_run_as_services_behind_the_gateways_guard(
    make_gateway: MakeGateway, swarm: SwarmTraefik, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-000000000000000")
    bob = lab.user("bob", "glpat-bob-1111111111111111")
    request = fit_project(lab, {alice: DEVELOPER, bob: DEVELOPER})
    # Traefik runs in a Swarm task: it reaches the gateway on the host through the bridge
    # that Swarm gives its containers.
    bridge = docker(
        "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", "docker_gwbridge"
    )
    port = free_port()
    lane = Lane("swarm", swarm.network, swarm.url, swarm.web_port)
    gateway = await make_gateway(
        **lane.env(), GITLAB_URL=gitlab_url, GATEWAY_PORT=str(port), GATEWAY_HOST="0.0.0.0",
        GATEWAY_INTERNAL_URL=f"http://{bridge}:{port}",
    )  # fmt: skip
    status, server = await call(gateway, "POST", "/servers", alice.token, json=request)
    assert status == 201, server
    name = server["name"]
    server = await wait_until(gateway, name, alice.token, "running")
    (service,) = services(gateway.instance).values()
    assert service["Spec"]["Labels"][naming.LABEL_SERVER] == name
    # Kept on the node its work area is on from the first start (a drained node's servers
    # do not move to an empty work area elsewhere).
    node = docker("node", "inspect", "--format", "{{.ID}}", "self")
    assert service["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id=={node}"]
    async with jupyter.session() as http:
        async with http.get(server["url"] + "api", headers=as_user(bob.token)) as answer:
            assert answer.status == 403
        async with http.get(server["url"] + "api", headers=as_user(alice.token)) as answer:
            assert answer.status == 200
    status, logs = await call_text(gateway, f"/logs/{name}", alice.token)
    assert status == 200 and "Jupyter Server" in logs

    # Her work area is a volume on the node the task ran on; she writes to it.
    volume = server["volume"]["name"]
    mounts = service["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert [(m["Source"], m["Target"]) for m in mounts] == [(volume, "/home/jovyan/work")]
    async with jupyter.session() as http:
        note = {"type": "file", "format": "text", "content": "kept"}
        async with http.put(
            server["url"] + "api/contents/note.txt", json=note, headers=as_user(alice.token)
        ) as answer:
            assert answer.status == 201
    status, _ = await call(gateway, "DELETE", f"/servers/{name}", alice.token)
    assert status == 204
    async with asyncio.timeout(60):
        while True:
            if not services(gateway.instance):
                break
            await asyncio.sleep(0.5)

    # Started again: pinned to the node that holds the volume, and the note is there.
    status, server = await call(gateway, "POST", "/servers", alice.token, json=request)
    assert status == 201, server
    server = await wait_until(gateway, name, alice.token, "running")
    (service,) = services(gateway.instance).values()
    placement = service["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    assert placement == [f"node.id=={node}"]
    # Running means answering past Traefik's next poll of Swarm: the removed service's
    # task address is no longer in the route (no 502 in between).
    async with jupyter.session() as http:
        for _ in range(10):
            url = server["url"] + "api/contents/note.txt"
            async with http.get(url, headers=as_user(alice.token)) as answer:
                assert answer.status == 200 and (await answer.json())["content"] == "kept"
    status, _ = await call(gateway, "DELETE", f"/servers/{name}?remove=true", alice.token)
    assert status == 204
    async with asyncio.timeout(60):
        while True:
            if not services(gateway.instance) and volume not in owned_volumes(gateway.instance):
                break
            await asyncio.sleep(0.5)


async def call_text(gateway: Gateway, path: str, token: str) -> tuple[int, str]:
    response = await gateway.client.get(path, headers=as_user(token))
    return response.status, await response.text()


async def test_a_placement_no_node_meets_fails_the_publish_in_swarms_words(
    make_gateway: MakeGateway, remote: GitRemote, swarm: SwarmTraefik
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    lane = Lane("swarm", swarm.network, swarm.url, swarm.web_port)
    gateway = await make_gateway(
        **lane.env(), SWARM_PLACEMENT="node.labels.notebooks==yes", NOTEBOOK_READY_TIMEOUT="10"
    )
    status, body = await gateway.notify("climate")
    assert status == 422, job_summary(body)
    (nb,) = body["error"]["detail"]["job"]["notebooks"]
    assert nb["reason"] == "not_ready", nb
    assert "no node could run it within 10 s (no suitable node" in nb["message"], nb
    (service,) = services(gateway.instance).values()
    assert service["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == [
        "node.labels.notebooks==yes"
    ]
