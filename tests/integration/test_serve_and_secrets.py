"""The real `notebook-gateway serve` process, end to end: its own logging, its own config loading.
No secret (API token, git token, registry password) may appear in anything it produces."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import Stack, gateway_env, new_instance
from tests.support.engine import docker, owned_containers, remove_instance
from tests.support.git_http import git_http_app
from tests.support.gitlab_events import ZERO, push_event
from tests.support.gitlab_events import headers as hook_headers
from tests.support.gitrepo import GitRemote, notebook
from tests.support.process import GatewayProcess
from tests.support.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

GIT_TOKEN = "glpat-NeverLogThis-4242"
HOOK_SECRET = "hook-secret-NeverLogThis-2424"


async def test_serve_publishes_and_never_reveals_a_secret(
    stack: Stack, remote: GitRemote, tmp_path: Path
) -> None:
    commit = remote.commit(
        {
            "climate/intro.ipynb": notebook("print(1)"),
            "climate/requirements.txt": b"six==1.16.0\n",
        }
    )
    instance = new_instance(stack)
    port = free_port()
    git_server = TestServer(git_http_app(remote.bare.parent, GIT_TOKEN), host="127.0.0.1")
    await git_server.start_server()
    env = gateway_env(
        stack,
        remote,
        tmp_path / "state",
        instance,
        GITLAB_REPO_URL=f"http://127.0.0.1:{git_server.port}/remote.git",
        GITLAB_ACCESS_TOKEN=GIT_TOKEN,
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        LOG_LEVEL="DEBUG",
        WEBHOOK_SECRET=HOOK_SECRET,
    )
    secrets = [env["AUTH_TOKEN"], GIT_TOKEN, stack.registry.password, HOOK_SECRET]
    log = tmp_path / "gateway.log"
    process = GatewayProcess(env, log)
    process.start()
    answers: list[str] = []
    url = process.url
    auth = {"Authorization": f"Bearer {env['AUTH_TOKEN']}"}
    try:
        await process.healthy(30)
        async with aiohttp.ClientSession() as http:
            body = {"project": "climate", "action": "update"}
            async with http.post(f"{url}/projects", json=body, headers=auth) as response:
                answers.append(await response.text())
                assert response.status == 200, answers[-1]
            job = json.loads(answers[-1])
            assert (
                job["notebooks"][0]["state"] == "running"
                and job["notebooks"][0]["commit"] == commit
            )
            async with http.get(f"{url}/jobs/{job['id']}", headers=auth) as response:
                answers.append(await response.text())
            body = {"project": "missing", "action": "update"}
            async with http.post(f"{url}/projects", json=body, headers=auth) as response:
                answers.append(await response.text())
                assert response.status == 404
            async with http.post(f"{url}/projects", json=body) as response:
                answers.append(await response.text())
                assert response.status == 401
            # A webhook delivery, with the right and a wrong secret, and the push job's log.
            event = push_event(ZERO, commit, path="remote")
            for secret, status in ((HOOK_SECRET, 202), ("not-" + HOOK_SECRET, 401)):
                async with http.post(
                    f"{url}/hooks/gitlab", json=event, headers=hook_headers(secret)
                ) as response:
                    answers.append(await response.text())
                    assert response.status == status, answers[-1]
            push_id = json.loads(answers[-2])["job"]["id"]
            for _ in range(240):
                async with http.get(f"{url}/jobs/{push_id}", headers=auth) as response:
                    answers.append(await response.text())
                    if json.loads(answers[-1])["state"] == "succeeded":
                        break
                await asyncio.sleep(0.5)
            for child in json.loads(answers[-1])["result"]["jobs"].values():
                async with http.get(f"{url}/jobs/{child}", headers=auth) as response:
                    answers.append(await response.text())
            # A git failure, whose message comes from git itself.
            await git_server.close()
            body = {"project": "climate", "action": "update"}
            async with http.post(f"{url}/projects", json=body, headers=auth) as response:
                answers.append(await response.text())
                assert response.status == 502, answers[-1]

        (container,) = owned_containers(instance)
        inspected = docker("inspect", container)
        image = json.loads(inspected)[0]["Config"]["Image"]
        image_meta = docker("image", "inspect", image)
        layers = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
        state_files = b"".join(
            p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file()
        )
    finally:
        process.stop()
        await git_server.close()
        remove_instance(instance)

    process_log = log.read_text()
    assert "job" in process_log and "building" in process_log  # the log is not empty
    texts = {
        "process log": process_log,
        "API answers": "\n".join(answers),
        "URL.md": remote.read("URL.md") or "",
        "container": inspected,
        "image": image_meta,
    }
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret appears in the {where}"
        assert secret.encode() not in layers, "a secret is inside the image layers"
        assert secret.encode() not in state_files, "a secret is stored under STATE_DIR"
