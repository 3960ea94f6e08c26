"""Failures are reported clearly, fail the CI job, and leave what runs alone."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from gateway.adapters.images import DockerEngine
from gateway.errors import NotebookFailed
from gateway.models import BuildLimits, ContextFile
from gateway.publish.context_tar import write_context_tar
from tests.conftest import (
    Gateway,
    Lane,
    MakeGateway,
    Stack,
    docker_ps,
    job_summary,
    new_instance,
)
from tests.support import jupyter
from tests.support.engine import build_image, docker, owned_containers, owned_images
from tests.support.gitrepo import GitRemote, notebook
from tests.support.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


async def test_wrong_registry_password_fails_fast_and_clearly(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway(REGISTRY_PASSWORD="not-the-password")
    status, body = await asyncio.wait_for(gateway.notify("climate"), timeout=120)
    assert status == 502, job_summary(body)
    error = body["error"]
    assert error["code"] == "registry_error"
    assert "login to registry" in error["message"] and stack.registry.host in error["message"]
    assert "not-the-password" not in json.dumps(body)
    # A refused password is not a passing failure: no retries.
    log = error["detail"]["job"]["log"]
    assert not [line for line in log if "retrying" in line["message"]], log
    # Nothing was built, started or committed.
    assert owned_containers(gateway.instance) == []
    assert owned_images(gateway.instance) == []
    assert remote.read("URL.md") is None


async def test_failed_build_returns_the_build_log_and_marks_url_md(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit(
        {
            "broken/a.ipynb": notebook("print('a')"),
            "broken/requirements.txt": b"this-package-does-not-exist-notebook-gateway==0.0.1\n",
        }
    )
    gateway = await make_gateway()
    dangling = set(docker("images", "-q", "--filter", "dangling=true").split())
    status, body = await gateway.notify("broken")
    assert status == 422, job_summary(body)
    # The failed build's intermediate images are removed, not left dangling.
    assert set(docker("images", "-q", "--filter", "dangling=true").split()) <= dangling
    error = body["error"]
    assert error["code"] == "deploy_failed"
    assert "a.ipynb" in error["message"] and "build failed" in error["message"]
    (nb,) = error["detail"]["job"]["notebooks"]
    assert nb["state"] == "failed" and nb["reason"] == "build_failed"
    build_log = "\n".join(nb["log"])
    assert "this-package-does-not-exist-notebook-gateway" in build_log, build_log
    assert owned_containers(gateway.instance) == []
    url_md = remote.read("URL.md") or ""
    assert "| a.ipynb | - | failed: " in url_md, url_md


async def test_notebook_that_cannot_start_is_reported_with_its_log(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    # A base image with Python but without Jupyter: the image builds, the server cannot start.
    gateway = await make_gateway(
        BASE_IMAGE="notebook-gateway/bookworm-rootfs:latest", NOTEBOOK_READY_TIMEOUT="60"
    )
    status, body = await gateway.notify("climate")
    assert status == 422, job_summary(body)
    (nb,) = body["error"]["detail"]["job"]["notebooks"]
    assert nb["state"] == "failed" and nb["reason"] == "start_failed", nb
    assert "exited" in nb["message"]
    assert any("jupyter" in line for line in nb["log"]), nb["log"]
    # The container is stopped, not left crash-looping.
    (container,) = owned_containers(gateway.instance)
    assert docker("inspect", "--format", "{{.State.Running}}", container) == "false"


async def test_broken_update_keeps_the_previous_version_serving(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    good = remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway()
    body = await gateway.publish("climate")
    url = body["notebooks"][0]["url"]
    before = owned_containers(gateway.instance)

    remote.commit({"climate/requirements.txt": b"this-package-does-not-exist-notebook-gateway\n"})
    status, body = await gateway.notify("climate")
    assert status == 422, job_summary(body)
    (nb,) = body["error"]["detail"]["job"]["notebooks"]
    assert "still served" in nb["message"] and nb["url"] == url and nb["commit"] == good
    assert owned_containers(gateway.instance) == before
    async with jupyter.session() as http, http.get(url + "api") as response:
        assert response.status == 200
    url_md = remote.read("URL.md") or ""
    assert f"<{url}> | failed: " in url_md, url_md


async def job_log(gateway: Gateway, job_id: str) -> list[dict[str, Any]]:
    response = await gateway.client.get(f"/jobs/{job_id}", headers=gateway.auth())
    return list((await response.json())["log"])


async def test_unreachable_git_remote_leaves_everything_as_it_was(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway()
    body = await gateway.publish("climate")
    running = owned_containers(gateway.instance)
    url_md = remote.read("URL.md")

    # The remote goes away.
    moved = remote.bare.with_name("moved.git")
    remote.bare.rename(moved)
    try:
        status, body = await gateway.notify("climate")
        assert status == 502, job_summary(body)
        assert body["error"]["code"] == "git_error"
        assert "git fetch" in body["error"]["message"]
        assert owned_containers(gateway.instance) == running

        # Meanwhile a notebook crashes: a reconcile pass brings it back from the last fetch.
        docker("kill", running[0])
        response = await gateway.client.post("/reconcile", headers=gateway.auth())
        result = await response.json()
        assert response.status == 200, job_summary(result)
        assert result["result"]["updated"] == ["climate"]
        assert any(
            "using the last fetch" in line["message"]
            for line in await job_log(gateway, result["id"])
        )
        (container,) = owned_containers(gateway.instance)
        assert docker("inspect", "--format", "{{.State.Running}}", container) == "true"
    finally:
        moved.rename(remote.bare)
    assert remote.read("URL.md") == url_md


def silent_base(stack: Stack, context: Path, instance: str) -> str:
    """A base image whose Jupyter hangs while reading its configuration: it runs, never
    answers."""
    return build_image(
        context,
        f"FROM {stack.base_image}\nUSER root\n"
        "RUN mkdir -p /etc/jupyter"
        " && echo 'import time; time.sleep(3600)' > /etc/jupyter/jupyter_server_config.py\n",
        f"{instance}-silent:latest",
        instance,
    )


async def test_notebook_that_never_answers_in_time_is_stopped_and_reported(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, tmp_path: Path
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    instance = new_instance(stack)
    silent = silent_base(stack, tmp_path, instance)
    gateway = await make_gateway(
        GATEWAY_INSTANCE=instance, BASE_IMAGE=silent, NOTEBOOK_READY_TIMEOUT="3"
    )
    status, body = await gateway.notify("climate")
    assert status == 422, job_summary(body)
    (nb,) = body["error"]["detail"]["job"]["notebooks"]
    assert nb["reason"] == "not_ready" and "did not answer" in nb["message"], nb
    assert isinstance(nb["log"], list)  # the log tail (Jupyter may not have printed yet)
    (container,) = owned_containers(gateway.instance)
    assert docker("inspect", "--format", "{{.State.Running}}", container) == "false"
    assert "| a.ipynb | - | failed: the notebook did not answer" in (remote.read("URL.md") or "")


async def test_a_new_version_that_never_answers_gives_way_to_the_previous_one(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, lane: Lane, tmp_path: Path
) -> None:
    good = remote.commit({"climate/a.ipynb": notebook("print('first')")})
    gateway = await make_gateway(**lane.env())
    body = await gateway.publish("climate")
    url = body["notebooks"][0]["url"]
    before = owned_containers(gateway.instance)

    # The gateway restarted (same instance and state) on a base image whose Jupyter never
    # answers.
    await gateway.client.close()
    silent = silent_base(stack, tmp_path, gateway.instance)
    broken = await make_gateway(
        GATEWAY_INSTANCE=gateway.instance,
        STATE_DIR=str(gateway.settings.state_dir),
        BASE_DOMAIN=gateway.settings.base_domain,
        BASE_IMAGE=silent,
        NOTEBOOK_READY_TIMEOUT="3",
        **lane.env(),
    )
    remote.commit({"climate/a.ipynb": notebook("print('second')")})
    status, body = await broken.notify("climate")
    assert status == 422, job_summary(body)
    (nb,) = body["error"]["detail"]["job"]["notebooks"]
    assert nb["reason"] == "not_ready", nb
    assert "still served" in nb["message"] and nb["url"] == url and nb["commit"] == good, nb
    if lane.runtime == "docker":
        assert owned_containers(gateway.instance) == before  # the same container, running
    async with jupyter.session() as http, http.get(url + "api/contents/a.ipynb") as response:
        assert response.status == 200
        assert "first" in json.dumps(await response.json())
    assert f"<{url}> | failed: " in (remote.read("URL.md") or "")


async def test_an_admin_stopping_a_notebook_during_its_handover_stops_both_versions(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, tmp_path: Path
) -> None:
    """While the new version proves it answers, the old one waits, stopped. An admin's stop
    removes both: the notebook does not come back as the previous version."""
    remote.commit({"climate/a.ipynb": notebook("print('first')")})
    gateway = await make_gateway()
    body = await gateway.publish("climate")
    ((old, (name, _)),) = docker_ps(gateway.instance).items()

    # The same gateway restarted on a base whose Jupyter never answers: the hand-over waits.
    await gateway.client.close()
    slow = await make_gateway(
        GATEWAY_INSTANCE=gateway.instance,
        STATE_DIR=str(gateway.settings.state_dir),
        BASE_DOMAIN=gateway.settings.base_domain,
        BASE_IMAGE=silent_base(stack, tmp_path, gateway.instance),
        NOTEBOOK_READY_TIMEOUT="300",
    )
    remote.commit({"climate/a.ipynb": notebook("print('second')")})
    status, body = await slow.notify("climate", wait=False)
    assert status == 202, body
    async with asyncio.timeout(120):  # the new version runs, the old one waits stopped
        while True:
            states = docker_ps(gateway.instance)
            running = [i for i, (_, state) in states.items() if state == "running"]
            if running and old not in running:
                break
            await asyncio.sleep(0.2)

    response = await slow.client.delete(f"/servers/{name}", headers=slow.auth())
    assert response.status == 204, await response.text()
    job = await slow.wait_for_job(body["id"], timeout=120)
    assert job["state"] == "failed", job_summary(job)
    (nb,) = job["notebooks"]
    assert nb["reason"] == "start_failed" and "removed" in nb["message"], nb
    assert "still served" not in nb["message"], nb
    assert owned_containers(gateway.instance) == []
    response = await slow.client.get(f"/servers/{name}", headers=slow.auth())
    assert response.status == 404


async def test_without_traefik_nothing_is_touched(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway()
    body = await gateway.publish("climate")
    running = owned_containers(gateway.instance)
    url_md = remote.read("URL.md")

    # The same gateway (instance and state) restarted while Traefik is unreachable.
    blind = await make_gateway(
        GATEWAY_INSTANCE=gateway.instance,
        STATE_DIR=str(gateway.settings.state_dir),
        BASE_DOMAIN=gateway.settings.base_domain,
        TRAEFIK_URL=f"http://127.0.0.1:{free_port()}",
    )
    remote.commit({"climate/b.ipynb": notebook("print('b')")})
    status, body = await blind.notify("climate")
    assert status == 502, job_summary(body)
    assert (
        body["error"]["code"] == "proxy_error" and "nothing was changed" in body["error"]["message"]
    )
    assert owned_containers(gateway.instance) == running
    assert docker("inspect", "--format", "{{.State.Running}}", running[0]) == "true"
    assert remote.read("URL.md") == url_md


async def test_builds_have_a_time_limit(stack: Stack) -> None:
    """The engine adapter stops a build that runs too long, and leaves nothing behind."""
    instance = new_instance(stack)
    dockerfile = f'FROM {stack.base_image}\nRUN ["sleep", "120"]\n'.encode()
    context = (ContextFile("Dockerfile", len(dockerfile), data=dockerfile),)
    lines: list[str] = []
    async with aiodocker.Docker() as client:
        engine = DockerEngine(client, instance)
        tar = write_context_tar(context, lambda sha: io.BytesIO(), 0)
        with tar, pytest.raises(NotebookFailed) as raised:
            await engine.build(
                f"notebook-gateway/{instance}/slow:1",
                tar,
                {"notebook-gateway.instance": instance},
                BuildLimits(2**30, 1.0, 64, timeout=3),
                on_line=lines.append,
            )
    assert raised.value.reason == "build_failed"
    assert "did not finish within 3 s" in raised.value.message
    assert any("sleep" in line for line in raised.value.log), raised.value.log
    # The engine cancels the build when the gateway hangs up; its container goes away.
    for _ in range(30):
        if not owned_containers(instance):
            break
        await asyncio.sleep(1)
    assert owned_containers(instance) == []
    assert owned_images(instance) == []
