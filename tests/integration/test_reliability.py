"""Bursts, reconciliation, broken notebooks and the rate limit, on the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import naming
from gateway.records import ServerRecord, ServerState
from gateway.web.keys import RUNTIME, STORE
from tests.conftest import Gateway, MakeGateway, Stack, job_summary
from tests.support import jupyter
from tests.support.engine import docker, owned_containers, owned_images
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


@contextlib.contextmanager
def events_held_back(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The gateway's index learns of nothing the engine reports meanwhile, as with an engine
    slow to send its events: whatever the gateway decides must come from its own reads."""
    index = gateway.client.app[RUNTIME].index
    assert index is not None and index.live
    released = asyncio.Event()
    take_in = index.apply

    async def later(event: Mapping[str, Any]) -> str | None:
        await released.wait()
        return await take_in(event)

    with monkeypatch.context() as patch:
        patch.setattr(index, "apply", later)
        try:
            yield
        finally:
            released.set()


def labels_of(container: str) -> dict[str, str]:
    return dict(json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", container)))


def containers_by_notebook(instance: str) -> dict[str, str]:
    return {labels_of(c)["notebook-gateway.notebook"]: c for c in owned_containers(instance)}


async def two_notebooks_deployed(
    make_gateway: MakeGateway, remote: GitRemote
) -> tuple[Gateway, dict[str, str], dict[str, str]]:
    """climate/a.ipynb and b.ipynb, deployed: the gateway, their containers and URLs."""
    remote.commit(
        {"climate/a.ipynb": notebook("print('a')"), "climate/b.ipynb": notebook("print('b')")}
    )
    gateway = await make_gateway()
    body = await gateway.publish("climate")
    urls = {nb["name"]: nb["url"] for nb in body["notebooks"]}
    return gateway, containers_by_notebook(gateway.instance), urls


async def test_a_burst_of_notifications_runs_at_most_twice_and_the_last_commit_wins(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('first')")})
    gateway = await make_gateway()
    calls = [asyncio.create_task(gateway.notify("climate")) for _ in range(5)]
    await asyncio.sleep(0.3)
    last = remote.commit({"climate/a.ipynb": notebook("print('last')")})
    calls += [asyncio.create_task(gateway.notify("climate")) for _ in range(5)]
    answers = await asyncio.gather(*calls)
    assert all(status == 200 for status, _ in answers), answers
    ran = {body["id"] for _, body in answers}
    assert len(ran) <= 2, ran
    response = await gateway.client.get("/jobs?project=climate&limit=50", headers=gateway.auth())
    jobs = (await response.json())["jobs"]
    assert len(jobs) == 10
    assert sum(job["state"] == "succeeded" for job in jobs) <= 2
    assert all(job["state"] in ("succeeded", "coalesced") for job in jobs)
    (container,) = owned_containers(gateway.instance)
    assert labels_of(container)["notebook-gateway.commit"] == last


async def test_reconcile_restarts_removes_adopts_and_leaves_the_rest_alone(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, before, urls = await two_notebooks_deployed(make_gateway, remote)
    images = owned_images(gateway.instance)
    owned = [
        "--label",
        f"notebook-gateway.instance={gateway.instance}",
        "--label",
        "notebook-gateway.kind=published",
        "--label",
        "notebook-gateway.container=planted",
    ]
    planted: list[str] = []
    try:
        # The pass must see all of this without a single event of it.
        with events_held_back(gateway, monkeypatch):
            # A crashed notebook, an orphan of a project that is gone, an owned container
            # without labels to place it, and a container that is not the gateway's at all.
            docker("kill", before["a.ipynb"])
            ghost = docker(
                "run", "-d", "--network", stack.network, *owned,
                "--label", "notebook-gateway.project=ghost",
                "--label", "notebook-gateway.notebook=x.ipynb",
                "--label", "notebook-gateway.content-hash=0", stack.base_image, "sleep", "600",
            )  # fmt: skip
            planted.append(ghost)
            unlabelled = docker("run", "-d", *owned, stack.base_image, "sleep", "600")
            planted.append(unlabelled)
            foreign = docker(
                "run", "-d", "--network", stack.network,
                "--label", "notebook-gateway.instance=someone-else",
                "--label", "notebook-gateway.project=climate",
                stack.base_image, "sleep", "600",
            )  # fmt: skip
            planted.append(foreign)
            response = await gateway.client.post("/reconcile", headers=gateway.auth())
            result = await response.json()
        assert response.status == 200, job_summary(result)
        assert set(result["result"]["updated"]) == {"climate", "ghost"}, job_summary(result)

        after = containers_by_notebook(gateway.instance)
        assert set(after) == {"a.ipynb", "b.ipynb"}
        assert after["b.ipynb"] == before["b.ipynb"]  # untouched
        assert owned_images(gateway.instance) == images  # restarted from its image, no build
        running = docker("ps", "-q", "--no-trunc", "--filter", f"id={foreign}")
        assert running == foreign, "a container the gateway does not own was touched"
        for gone in (ghost, unlabelled):
            assert docker("ps", "-aq", "--no-trunc", "--filter", f"id={gone}") == ""
        async with jupyter.session() as http:
            for url in urls.values():
                async with http.get(url + "api") as answer:
                    assert answer.status == 200

        # A gateway that lost its database adopts what runs, without rebuilding or restarting.
        fresh = await make_gateway(
            GATEWAY_INSTANCE=gateway.instance,
            BASE_DOMAIN=gateway.settings.base_domain,
            STATE_DIR=str(gateway.settings.state_dir) + "-lost",
            RECONCILE_INTERVAL="3600",
        )
        for _ in range(240):
            response = await fresh.client.get("/jobs?project=climate", headers=fresh.auth())
            if [j for j in (await response.json())["jobs"] if j["state"] == "succeeded"]:
                break
            await asyncio.sleep(0.5)
        assert containers_by_notebook(gateway.instance) == after
        assert owned_images(gateway.instance) == images
        (job,) = (await response.json())["jobs"]
        assert {nb["action"] for nb in job["notebooks"]} == {"unchanged"}, job_summary(job)
    finally:
        docker("rm", "-f", *planted, check=False)


async def test_a_deploy_plans_from_what_the_engine_says_now(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone removed a notebook's container and ran a stray one of ours moments before the
    notification: the plan sees both, although no event of either has arrived."""
    gateway, before, urls = await two_notebooks_deployed(make_gateway, remote)
    with events_held_back(gateway, monkeypatch):
        docker("rm", "-f", before["a.ipynb"])
        stray = docker(
            "run", "-d", "--network", stack.network, "--name", f"{gateway.instance}-stray",
            "--label", f"notebook-gateway.instance={gateway.instance}",
            "--label", "notebook-gateway.kind=published",
            "--label", "notebook-gateway.container=stray",
            "--label", "notebook-gateway.project=climate",
            "--label", "notebook-gateway.notebook=b.ipynb",
            "--label", "notebook-gateway.content-hash=0",
            stack.base_image, "sleep", "600",
        )  # fmt: skip
        try:
            status, body = await gateway.notify("climate")
        finally:
            docker("rm", "-f", stray, check=False)
    assert status == 200, job_summary(body)
    actions = {nb["name"]: nb["action"] for nb in body["notebooks"]}
    assert actions == {"a.ipynb": "restarted", "b.ipynb": "unchanged"}, job_summary(body)
    response = await gateway.client.get(f"/jobs/{body['id']}", headers=gateway.auth())
    log = [line["message"] for line in (await response.json())["log"]]
    # Planned from the index, a.ipynb would have been kept, then found silent after 15 s.
    assert not [line for line in log if "not answering" in line], log
    assert f"removing container {gateway.instance}-stray" in log, log
    after = containers_by_notebook(gateway.instance)
    assert set(after) == {"a.ipynb", "b.ipynb"} and after["b.ipynb"] == before["b.ipynb"]
    async with jupyter.session() as http, http.get(urls["a.ipynb"] + "api") as answer:
        assert answer.status == 200


async def test_one_broken_notebook_fails_alone(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit(
        {
            "mixed/fine.ipynb": notebook("print('fine')"),
            "mixed/broken.ipynb": b'{"cells": [ this is not json',
            "badreq/a.ipynb": notebook("print('a')"),
            "badreq/requirements.txt": b"no-such-package-notebook-gateway-test==1.0\n",
            "other/c.ipynb": notebook("print('c')"),
        }
    )
    gateway = await make_gateway()
    answers = dict(
        zip(
            ("mixed", "badreq", "other"),
            await asyncio.gather(*(gateway.notify(p) for p in ("mixed", "badreq", "other"))),
            strict=True,
        )
    )
    status, body = answers["mixed"]
    assert status == 422, job_summary(body)
    states = {
        nb["name"]: (nb["state"], nb["reason"])
        for nb in body["error"]["detail"]["job"]["notebooks"]
    }
    assert states == {
        "fine.ipynb": ("running", None),
        "broken.ipynb": ("failed", "invalid_notebook"),
    }
    assert answers["badreq"][0] == 422
    assert answers["other"][0] == 200
    url_md = remote.read("URL.md") or ""
    assert "| fine.ipynb | <http" in url_md and "| c.ipynb | <http" in url_md
    assert "| broken.ipynb | - | failed: broken.ipynb: it is not valid JSON" in url_md
    assert "| a.ipynb | - | failed: the image build failed" in url_md
    assert set(containers_by_notebook(gateway.instance)) == {"fine.ipynb", "c.ipynb"}


async def test_notification_endpoints_are_rate_limited(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway(RATE_LIMIT="3")
    statuses = []
    for _ in range(4):
        response = await gateway.client.post("/projects", data=b"{}", headers=gateway.auth())
        statuses.append(response.status)
    assert statuses == [400, 400, 400, 429]
    body = await response.json()
    assert body["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 20
    # Reading is not limited, and nothing was started.
    response = await gateway.client.get("/jobs", headers=gateway.auth())
    assert response.status == 200 and (await response.json())["jobs"] == []


async def test_an_unchanged_notebook_that_stopped_answering_is_restarted_beside_a_change(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    gateway, before, urls = await two_notebooks_deployed(make_gateway, remote)

    # a.ipynb runs the right content but is frozen; b.ipynb changes in the same job.
    docker("pause", before["a.ipynb"])
    remote.commit({"climate/b.ipynb": notebook("print('b, again')")})
    body = await gateway.publish("climate")
    actions = {nb["name"]: nb["action"] for nb in body["notebooks"]}
    assert actions == {"a.ipynb": "restarted", "b.ipynb": "built"}, job_summary(body)
    after = containers_by_notebook(gateway.instance)
    assert after["a.ipynb"] != before["a.ipynb"] and after["b.ipynb"] != before["b.ipynb"]
    assert set(owned_containers(gateway.instance)) == set(after.values())
    async with jupyter.session() as http:
        for url in urls.values():
            async with http.get(url + "api/status") as response:
                assert response.status == 200, url


async def test_the_servers_reconcile_reads_the_engine_not_the_events_so_far(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's server whose container went a moment ago is reported gone, and a server
    container nobody asked for, started a moment ago, is removed: neither event has
    arrived when the pass runs."""
    remote.commit({"README.md": b"no projects\n"})
    gateway = await make_gateway()
    store, index = gateway.client.app[STORE], gateway.client.app[RUNTIME].index
    assert index is not None

    def server_labels(name: str) -> list[str]:
        labels = {
            naming.LABEL_INSTANCE: gateway.instance,
            naming.LABEL_KIND: naming.KIND_USER,
            naming.LABEL_SERVER: name,
            naming.LABEL_USER_ID: "7",
            naming.LABEL_CONTAINER: f"{gateway.instance}-{name}",
        }
        return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]

    now = datetime.now(UTC).isoformat()
    await store.add_server(
        ServerRecord(
            name="alice-analysis-1", user_id=7, username="alice", namespace="group",
            project="analysis", branch="main", commit_sha="a" * 40, notebook="",
            image="", options={"cpu_request": 1.0, "mem_request": "1G"},
            state=ServerState.RUNNING, message="", url="http://alice-analysis-1.test/",
            created_at=now, updated_at=now,
        )
    )  # fmt: skip
    known = docker(
        "run", "-d", "--network", "none", *server_labels("alice-analysis-1"),
        stack.base_image, "sleep", "600",
    )  # fmt: skip
    planted: list[str] = [known]
    try:
        for _ in range(150):  # the index has seen the server's container
            if index.get(known) is not None:
                break
            await asyncio.sleep(0.1)
        assert index.get(known) is not None
        with events_held_back(gateway, monkeypatch):
            docker("rm", "-f", known)
            stray = docker(
                "run", "-d", "--network", "none", *server_labels("nobody-asked-1"),
                stack.base_image, "sleep", "600",
            )  # fmt: skip
            planted.append(stray)
            response = await gateway.client.post("/reconcile", headers=gateway.auth())
            assert response.status == 200, await response.text()
            assert docker("ps", "-aq", "--no-trunc", "--filter", f"id={stray}") == ""
            response = await gateway.client.get("/servers/alice-analysis-1", headers=gateway.auth())
            server = await response.json()
        assert (server["status"]["state"], server["status"]["message"]) == (
            "failed",
            "the server's container is gone; start it again",
        ), server
    finally:
        docker("rm", "-f", *planted, check=False)
