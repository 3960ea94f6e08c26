"""The `notebook-gateway` client commands against a live `serve` process (its log as JSON
lines), and `deploy --local` running the gateway in the command's own process."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Stack, gateway_env, new_instance
from tests.support.engine import owned_containers, remove_instance
from tests.support.gitrepo import GitRemote, notebook
from tests.support.process import BINARY, GatewayProcess
from tests.support.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        BINARY, *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd="/",  # no .env file on the way
    )  # fmt: skip
    async with asyncio.timeout(300):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_deploy_list_and_logs_against_a_live_gateway(
    stack: Stack, remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit({"climate/intro.ipynb": notebook("print(1)")})
    instance = new_instance(stack)
    env = gateway_env(
        stack, remote, tmp_path / "state", instance,
        GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(free_port()), LOG_FORMAT="json",
    )  # fmt: skip
    log = tmp_path / "gateway.log"
    gateway = GatewayProcess(env, log)
    client = {"GATEWAY_URL": gateway.url, "AUTH_TOKEN": env["AUTH_TOKEN"]}
    try:
        gateway.start()
        await gateway.healthy()
        code, out = await cli("deploy", "climate", env=client)
        assert code == 0, out
        lines = out.splitlines()
        assert lines[0].startswith("job ") and lines[0].endswith("update climate")
        for step in ("fetching", "building", "starting", "ready", "done"):
            assert any(line.split()[:1] == [step] for line in lines), out
        assert "Step 1/" not in out  # build output only with --verbose
        assert len(owned_containers(instance)) == 1
        assert any(line.startswith("succeeded in ") for line in lines), out
        url = f"http://intro--climate.{instance}.localhost:{stack.traefik.web_port}/"
        assert f"running  intro.ipynb  {url}" in out

        code, out = await cli("list", env=client)
        assert code == 0, out
        assert re.fullmatch(
            r"climate  \(last deploy \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, succeeded\)",
            out.splitlines()[0],
        ), out
        assert f"running  intro.ipynb  {url}  [{instance}-intro--climate]" in out
        code, out = await cli("list", "--json", env=client)
        assert json.loads(out)["projects"][0]["notebooks"][0]["url"] == url

        code, out = await cli("logs", f"{instance}-intro--climate", "-n", "40", env=client)
        assert code == 0 and "Jupyter Server" in out, out

        code, out = await cli("volumes", env=client)
        assert code == 0 and out.strip() == "no work areas", out
        code, out = await cli("volumes", "--remove", "nbgw-work-nobody", env=client)
        assert code == 1 and "there is no work area 'nbgw-work-nobody'" in out, out

        code, out = await cli("deploy", "nowhere", env=client)
        assert code == 1 and "there is no project 'nowhere'" in out, out
        code, out = await cli("list", env={**client, "AUTH_TOKEN": "wrong-token"})
        assert code == 1 and "invalid token" in out, out
        code, out = await cli("list", "--url", f"http://127.0.0.1:{free_port()}", env=client)
        assert code == 3 and "cannot reach the gateway" in out, out
        code, out = await cli("list", env={"GATEWAY_URL": gateway.url, "AUTH_TOKEN": ""})
        assert code == 2 and "AUTH_TOKEN" in out, out

        # Every line of the process log is JSON; request and job lines say whose they are.
        headers = {"Authorization": f"Bearer {env['AUTH_TOKEN']}", "X-Request-Id": "ci-run-42"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gateway.url}/jobs", headers=headers) as response,
        ):
            assert response.headers["X-Request-Id"] == "ci-run-42"
    finally:
        gateway.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"time", "level", "logger", "message", "request_id", "job_id"} <= set(records[0])
    access = [r for r in records if r["logger"] == "aiohttp.access"]
    assert access and all(r["request_id"] for r in access)
    assert any(r["request_id"] == "ci-run-42" and "/jobs" in r["message"] for r in access)
    steps = [r for r in records if r["logger"] == "gateway.services.runner"]
    assert any(r["job_id"] and "building" in r["message"] for r in steps), steps[:5]
    assert env["AUTH_TOKEN"] not in log.read_text()

    # Without a running gateway: `deploy --local` runs one in its own process.
    try:
        remote.commit({"climate/second.ipynb": notebook("print(2)")})
        code, out = await cli("deploy", "climate", "--local", env=env)
        assert code == 0, out
        assert "running  second.ipynb  " in out and "running  intro.ipynb  " in out, out
        assert len(owned_containers(instance)) == 2
    finally:
        remove_instance(instance)
