"""The in-memory container index against the real engine: it follows what happens behind the
gateway's back (kills, restarts, renames, removals) and agrees with `docker ps`."""

from __future__ import annotations

import asyncio
import json
import time

import aiodocker
import pytest

from gateway import naming
from gateway.adapters.runtimes.docker import ContainerIndex, ContainerRuntime
from gateway.errors import NotebookFailed
from gateway.models import Launch, ResourceLimits
from gateway.web.keys import RUNTIME
from tests.conftest import Gateway, MakeGateway, Stack, agrees, docker_ps, indexed
from tests.support.engine import docker, remove_instance
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def run(stack: Stack, instance: str, *extra: str) -> str:
    return docker(
        "run", "-d", "--label", f"{naming.LABEL_INSTANCE}={instance}", *extra,
        stack.base_image, "sleep", "600",
    )  # fmt: skip


async def test_the_index_follows_changes_behind_the_gateways_back(
    stack: Stack, instance: str
) -> None:
    mine = ("--label", f"{naming.LABEL_CONTAINER}=x")
    async with aiodocker.Docker() as client:
        index = ContainerIndex(client, instance, resync_interval=3600)  # events alone
        first = run(stack, instance, *mine, "--restart", "unless-stopped")
        await index.start()
        try:
            assert index.live
            assert list(await agrees(index, instance)) == [first]

            second = run(stack, instance, *mine)
            # A build's intermediate container (image labels, no container label) and another
            # gateway's container are not ours.
            run(stack, instance)
            run(stack, f"{instance}x", *mine)
            assert set(await agrees(index, instance)) == {first, second}

            docker("kill", first)
            docker("stop", "-t", "0", second)
            view = await agrees(index, instance)
            assert view[second][1] == "exited"
            docker("restart", "-t", "0", first)
            docker("start", second)
            assert {state for _, state in (await agrees(index, instance)).values()} == {"running"}
            docker("rename", second, f"{instance}-renamed")
            assert (await agrees(index, instance))[second][0] == f"{instance}-renamed"
            state = index.get(second)
            assert state is not None and state.state.running

            docker("rm", "-f", first)
            assert list(await agrees(index, instance)) == [second]
            assert index.get(first) is None
        finally:
            await index.close()
            remove_instance(f"{instance}x")


async def test_a_resync_finds_what_no_event_reported(stack: Stack, instance: str) -> None:
    mine = ("--label", f"{naming.LABEL_CONTAINER}=x")
    async with aiodocker.Docker() as client:
        index = ContainerIndex(client, instance, resync_interval=3600)  # never started
        runtime = ContainerRuntime(client, instance, index)
        kept = run(stack, instance, *mine)
        dropped = run(stack, instance, *mine)
        await index.resync()
        assert set(indexed(index)) == {kept, dropped}
        docker("rm", "-f", dropped)
        docker("stop", "-t", "0", kept)
        await index.resync()
        assert indexed(index) == docker_ps(instance) == {kept: (indexed(index)[kept][0], "exited")}
        # Not following the engine, the index is not trusted: readers ask the engine.
        assert not index.live
        assert [c.id for c in await runtime.containers()] == [kept]


async def one_notebook_published(
    make_gateway: MakeGateway, remote: GitRemote
) -> tuple[Gateway, ContainerIndex]:
    """A gateway that has published climate/a.ipynb, and its container index."""
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway()
    await gateway.publish("climate")
    runtime = gateway.client.app[RUNTIME]
    assert isinstance(runtime, ContainerRuntime) and runtime.index is not None
    return gateway, runtime.index


async def test_the_servers_api_reflects_what_happens_behind_the_gateways_back(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    gateway, index = await one_notebook_published(make_gateway, remote)
    assert index.live
    (container,) = docker_ps(gateway.instance)
    name = docker("inspect", "--format", "{{.Name}}", container).lstrip("/")
    admin = gateway.auth()

    async def state() -> tuple[int, str]:
        response = await gateway.client.get(f"/servers/{name}", headers=admin)
        body = await response.json()
        return response.status, body["status"]["state"] if response.status == 200 else ""

    async def becomes(expected: tuple[int, str]) -> None:
        async with asyncio.timeout(15):
            while True:
                if await state() == expected:
                    return
                await asyncio.sleep(0.1)

    assert await state() == (200, "running")
    docker("stop", "-t", "0", container)
    await becomes((200, "failed"))
    assert await agrees(index, gateway.instance)
    docker("start", container)
    await becomes((200, "running"))
    docker("rm", "-f", container)
    await becomes((404, ""))
    assert await agrees(index, gateway.instance) == {}
    assert index.live


async def test_a_notebook_in_the_middle_of_a_handover_is_one_server_the_new_version(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    """What a hand-over leaves while the new version proves it answers (or for good, when the
    gateway is killed meanwhile): the old container stopped under the notebook's name, the new
    one running under a passing name. Every view shows the notebook once, as the new one."""
    gateway, index = await one_notebook_published(make_gateway, remote)
    ((old, (name, _)),) = docker_ps(gateway.instance).items()
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", old))
    labels[naming.LABEL_COMMIT] = "f" * 40
    image = docker("inspect", "--format", "{{.Config.Image}}", old)
    docker("stop", "-t", "0", old)
    label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    new = docker("run", "-d", "--name", f"{name}-next-0a1b2c", *label_args, image)
    assert (await agrees(index, gateway.instance))[new][1] == "running"
    admin = gateway.auth()

    response = await gateway.client.get(f"/servers/{name}", headers=admin)
    server = await response.json()
    assert response.status == 200, server
    assert server["name"] == name and server["status"]["state"] == "running", server
    assert server["annotations"]["commit_sha"] == "f" * 40
    response = await gateway.client.get("/servers", headers=admin)
    listed = (await response.json())["servers"]
    assert list(listed) == [name], listed
    assert listed[name]["annotations"]["commit_sha"] == "f" * 40
    response = await gateway.client.get("/status", headers=admin)
    board = await response.json()
    (row,) = [nb for p in board["projects"] for nb in p["notebooks"]]
    assert (row["container"], row["state"]) == (name, "running"), row
    response = await gateway.client.get(f"/logs/{name}", headers=admin)
    assert response.status == 200

    # The next deploy finishes the interrupted hand-over: one container, under the name.
    await gateway.publish("climate")
    ((_, (final_name, state)),) = (await agrees(index, gateway.instance)).items()
    assert (final_name, state) == (name, "running")


def launch(stack: Stack, instance: str, command: list[str]) -> Launch:
    return Launch(
        name=f"{instance}-nb",
        image=stack.base_image,
        labels={naming.LABEL_INSTANCE: instance},
        hostname="nb",
        network=stack.network,
        user="1000:100",
        limits=ResourceLimits(memory=256 * 2**20, cpus=1.0, pids=64),
        command=command,
    )


async def test_a_new_version_takes_over_the_name_and_the_old_one_goes(
    stack: Stack, instance: str
) -> None:
    async with aiodocker.Docker() as client:
        runtime = ContainerRuntime(client, instance)
        old = (await runtime.start(launch(stack, instance, ["sleep", "600"]))).id
        since = str(int(time.time()) - 1)
        handover = await runtime.start(launch(stack, instance, ["sleep", "601"]), replaces=[old])
        new = handover.id
        # Until the handover completes, the old version waits, stopped, under its name.
        ps = docker_ps(instance)
        assert ps[old] == (f"{instance}-nb", "exited") and ps[new][1] == "running", ps
        await runtime.complete(handover)
        assert await runtime.state(old) is None
        assert docker_ps(instance) == {new: (f"{instance}-nb", "running")}
        # The old one has died before the new one starts: the proxy never routes to both.
        events = docker(
            "events", "--since", since, "--until", str(int(time.time()) + 1),
            "--filter", f"label={naming.LABEL_INSTANCE}={instance}",
            "--filter", "event=die", "--filter", "event=start", "--format", "{{.Action}} {{.ID}}",
        ).splitlines()  # fmt: skip
        assert events.index(f"die {old}") < events.index(f"start {new}"), events


async def test_a_new_version_that_cannot_start_leaves_the_old_one_serving(
    stack: Stack, instance: str
) -> None:
    async with aiodocker.Docker() as client:
        runtime = ContainerRuntime(client, instance)
        old = (await runtime.start(launch(stack, instance, ["sleep", "600"]))).id
        broken = launch(stack, instance, ["/no/such/program"])
        with pytest.raises(NotebookFailed) as failure:
            await runtime.start(broken, replaces=[old])
        assert failure.value.reason == "start_failed"
        # The old version was stopped for the hand-over, and runs again under its own name.
        assert docker_ps(instance) == {old: (f"{instance}-nb", "running")}
        restarts = docker("inspect", "--format", "{{.RestartCount}}", old)
        assert restarts == "0"


async def test_a_reverted_handover_brings_the_old_version_back(stack: Stack, instance: str) -> None:
    async with aiodocker.Docker() as client:
        runtime = ContainerRuntime(client, instance)
        old = (await runtime.start(launch(stack, instance, ["sleep", "600"]))).id
        handover = await runtime.start(launch(stack, instance, ["sleep", "601"]), replaces=[old])
        await runtime.revert(handover)
        assert await runtime.state(handover.id) is None
        assert docker_ps(instance) == {old: (f"{instance}-nb", "running")}
