"""Idle culling against the real engine and Traefik: a user's server that Jupyter reports idle
is stopped; one in use is kept; a published notebook is left alone."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import MakeGateway, job_summary
from tests.integration.test_observability import scrape
from tests.integration.test_servers import as_user, call, gone, wait_until
from tests.support import jupyter
from tests.support.engine import owned_containers
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

IDLE = 6


async def test_an_idle_server_is_culled_and_a_published_notebook_is_not(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-000000000000000")
    project = lab.project("group/analysis", {alice: DEVELOPER})
    sha = project.remote.commit({"fit.ipynb": notebook("print(1)")})
    remote.commit({"published/p.ipynb": notebook("print('p')")})
    gateway = await make_gateway(
        GITLAB_URL=gitlab_url, CULL_IDLE_TIMEOUT=str(IDLE), CULL_INTERVAL="1"
    )
    body = await gateway.publish("published")
    (published,) = owned_containers(gateway.instance)

    request = {"namespace": "group", "project": "analysis", "commit_sha": sha}
    status, server = await call(gateway, "POST", "/servers", alice.token, json=request)
    assert status == 201, server
    server = await wait_until(gateway, server["name"], alice.token, "running")

    # In use (Jupyter's contents API counts as activity): kept well past the timeout.
    async with jupyter.session() as http:
        for _ in range(IDLE + 4):
            async with http.get(server["url"] + "api/contents", headers=as_user(alice.token)) as r:
                assert r.status == 200
            await asyncio.sleep(1)
    status, still = await call(gateway, "GET", f"/servers/{server['name']}", alice.token)
    assert status == 200 and still["status"]["state"] == "running", still

    # Left alone: stopped within the timeout and a few passes.
    async with asyncio.timeout(IDLE + 30):
        await gone(gateway, server["name"], alice.token)
    assert published in owned_containers(gateway.instance)  # idle as long, never culled
    async with jupyter.session() as http, http.get(body["notebooks"][0]["url"] + "api") as r:
        assert r.status == 200
    metrics = await scrape(gateway)
    assert (
        metrics[("notebook_gateway_culled_servers_total", (("kind", "user"), ("reason", "idle")))]
        == 1
    )
    assert not any(
        name == "notebook_gateway_culled_servers_total" and ("kind", "published") in labels
        for name, labels in metrics
    )


async def test_with_cull_published_an_idle_published_notebook_goes_too(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"published/p.ipynb": notebook("print('p')")})
    gateway = await make_gateway(CULL_PUBLISHED="true", CULL_IDLE_TIMEOUT="3", CULL_INTERVAL="1")
    body = await gateway.publish("published")
    async with asyncio.timeout(40):
        while True:
            if not owned_containers(gateway.instance):
                break
            await asyncio.sleep(0.5)
    metrics = await scrape(gateway)
    culled = ("notebook_gateway_culled_servers_total", (("kind", "published"), ("reason", "idle")))
    assert metrics[culled] == 1
    # It comes back with the next deploy.
    status, body = await gateway.notify("published")
    assert status == 200 and body["notebooks"][0]["action"] == "restarted", job_summary(body)
