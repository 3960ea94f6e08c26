"""Faults on the real stack: the gateway killed mid-build, the Docker engine restarted during a
deploy, the registry down or answering 5xx."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.adapters.runtimes.docker import ContainerRuntime
from gateway.web.keys import RUNTIME
from tests.conftest import (
    Gateway,
    MakeGateway,
    Stack,
    agrees,
    gateway_env,
    job_summary,
    new_instance,
)
from tests.support import jupyter
from tests.support.engine import docker, owned_containers, remove_instance
from tests.support.faulty_proxy import FAILURES, faulty_proxy
from tests.support.gitrepo import GitRemote, notebook
from tests.support.process import GatewayProcess
from tests.support.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[2]


def slow_requirements() -> bytes:
    """A requirements file no earlier build has seen, so pip really runs (a few seconds)."""
    return f"six==1.16.0\n# {uuid.uuid4()}\n".encode()


def pip_is_running(log: list[dict[str, Any]]) -> bool:
    return any(line["phase"] == "building" and "pip" in line["message"] for line in log)


async def test_killed_mid_build_the_job_completes_after_a_restart(
    stack: Stack, remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit(
        {"climate/a.ipynb": notebook("print(42)"), "climate/requirements.txt": slow_requirements()}
    )
    instance = new_instance(stack)
    env = gateway_env(
        stack, remote, tmp_path / "state", instance,
        GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(free_port()),
    )  # fmt: skip
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    auth = {"Authorization": f"Bearer {env['AUTH_TOKEN']}"}
    try:
        gateway.start()
        await gateway.healthy()
        async with aiohttp.ClientSession(headers=auth) as http:
            notification = {"project": "climate", "action": "update"}
            async with http.post(f"{gateway.url}/projects?wait=false", json=notification) as answer:
                assert answer.status == 202
                job_id = (await answer.json())["id"]
            async with asyncio.timeout(120):
                while True:
                    async with http.get(f"{gateway.url}/jobs/{job_id}") as answer:
                        if pip_is_running((await answer.json())["log"]):
                            break
                    await asyncio.sleep(0.1)
            gateway.kill()  # in the middle of `pip install`

            gateway.start()
            await gateway.healthy()
            async with asyncio.timeout(300):
                while True:
                    async with http.get(f"{gateway.url}/jobs/{job_id}") as answer:
                        job = await answer.json()
                    if job["state"] in ("succeeded", "failed"):
                        break
                    await asyncio.sleep(0.5)
        assert job["state"] == "succeeded", job_summary(job)
        (nb,) = job["notebooks"]
        assert nb["state"] == "running"
        assert f"| a.ipynb | <{nb['url']}> | running |" in (remote.read("URL.md") or "")
        # The install container the killed gateway left was removed when it started again.
        left = docker(
            "ps", "-aq", "--filter", f"label=notebook-gateway.instance={instance}",
            "--filter", "label=notebook-gateway.kind=environment",
        )  # fmt: skip
        assert left == ""
        async with jupyter.session() as http:
            assert await jupyter.execute(http, nb["url"], "print(6 * 7)") == "42\n"
    finally:
        gateway.stop()
        remove_instance(instance)


def stop_dockerd() -> None:
    pid = int(Path("/var/run/docker.pid").read_text())
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    for _ in range(120):
        if subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0:
            return
        subprocess.run(["sleep", "0.5"], check=True)
    raise AssertionError("dockerd did not stop within 60 s")


def start_dockerd() -> None:
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), "dockerd"], check=True, timeout=120)


async def job_starting_a_notebook(gateway: Gateway) -> str:
    """The id of the job of `climate` whose new container is starting but not yet answering."""
    async with asyncio.timeout(180):
        while True:
            response = await gateway.client.get(
                "/jobs?project=climate&state=running", headers=gateway.auth()
            )
            for job in (await response.json())["jobs"]:
                detail = await gateway.client.get(f"/jobs/{job['id']}", headers=gateway.auth())
                phases = {line["phase"] for line in (await detail.json())["log"]}
                if "starting" in phases and "ready" not in phases:
                    return str(job["id"])
            await asyncio.sleep(0.1)


async def test_docker_engine_restarted_during_a_deploy_converges(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('v1')")})
    gateway = await make_gateway(RECONCILE_INTERVAL="15")
    body = await gateway.publish("climate")
    url = body["notebooks"][0]["url"]

    # The engine stops (as `systemctl restart docker` does) while v2 is starting.
    new = remote.commit({"climate/a.ipynb": notebook("print('v2')")})
    await gateway.notify("climate", wait=False)
    victim = await job_starting_a_notebook(gateway)
    stop_dockerd()
    try:
        job = await gateway.wait_for_job(victim, timeout=120)
        assert job["state"] == "failed", job_summary(job)
        assert job["error"]["code"] == "docker_error", job_summary(job)
        assert "docker engine" in job["error"]["message"].lower()
    finally:
        start_dockerd()

    # Periodic reconcile passes converge once the engine is back: v2 runs and answers.
    async with asyncio.timeout(300), jupyter.session() as http:
        while True:
            infos = [
                json.loads(docker("inspect", c))[0] for c in owned_containers(gateway.instance)
            ]
            running = [info for info in infos if info["State"]["Running"]]
            labels = running[0]["Config"]["Labels"] if len(running) == 1 else {}
            published = f"`{new[:8]}`" in (remote.read("URL.md") or "")
            if labels.get("notebook-gateway.commit") == new and published:
                try:
                    if await jupyter.execute(http, url, "print('back')") == "back\n":
                        break
                except (AssertionError, aiohttp.ClientError):
                    pass
            await asyncio.sleep(2)

    # The container index follows the new engine again and agrees with it.
    runtime = gateway.client.app[RUNTIME]
    assert isinstance(runtime, ContainerRuntime) and runtime.index is not None
    view = await agrees(runtime.index, gateway.instance)
    assert [state for _, state in view.values()] == ["running"]


async def test_registry_down_fails_after_bounded_retries_then_recovers(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway(REGISTRY_RETRIES="3", REGISTRY_RETRY_DELAY="0.2")
    stack.registry.stop()
    try:
        status, body = await gateway.notify("climate")
    finally:
        stack.registry.restart()
    assert status == 502, job_summary(body)
    error = body["error"]
    assert error["code"] == "registry_error" and "connection refused" in error["message"]
    retries = [line for line in error["detail"]["job"]["log"] if "retrying in" in line["message"]]
    assert len(retries) == 2, retries  # three attempts in all
    assert owned_containers(gateway.instance) == []
    assert remote.read("URL.md") is None

    body = await gateway.publish("climate")


async def test_registry_answering_503_is_retried_until_it_answers(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    proxy_app = faulty_proxy(stack.registry.host, fail_first=2)
    async with TestServer(proxy_app, host="127.0.0.1") as proxy:
        gateway = await make_gateway(
            REGISTRY_HOST=f"127.0.0.1:{proxy.port}", REGISTRY_RETRY_DELAY="0.2"
        )
        body = await gateway.publish("climate")
        assert len(proxy_app[FAILURES]) == 2
        response = await gateway.client.get(f"/jobs/{body['id']}", headers=gateway.auth())
        log = (await response.json())["log"]
        assert any("503" in line["message"] and "retrying in" in line["message"] for line in log), (
            log
        )
