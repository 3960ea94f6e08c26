"""Watching the gateway work, against the real engine, registry, Traefik and git: a deploy's
server-sent events, /health turning 503 when a part is down, and /metrics counting."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.client import Event, parse_events
from gateway.records import JobAction, JobOrigin
from gateway.web import events
from gateway.web.keys import RUNNER, STORE
from tests.conftest import Gateway, MakeGateway, Stack, job_summary
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

STREAM = {"Accept": "text/event-stream"}


async def read_stream(
    gateway: Gateway, job_id: str, headers: dict[str, str] | None = None
) -> tuple[list[Event], str]:
    """Every event of the job's stream, and the raw text (comments included)."""
    response = await gateway.client.get(
        f"/jobs/{job_id}/events", headers={**gateway.auth(), **STREAM, **(headers or {})}
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    raw: list[str] = []

    async def lines() -> AsyncIterator[bytes]:
        async for line in response.content:
            raw.append(line.decode())
            yield line

    found = []
    async with asyncio.timeout(300):
        async for event in parse_events(lines()):
            found.append(event)
    return found, "".join(raw)


async def test_a_deploy_streams_its_phases_in_order_and_ends_with_the_job(
    make_gateway: MakeGateway, remote: GitRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE", 0.2)
    remote.commit(
        {
            "climate/intro.ipynb": notebook("print(1)"),
            "climate/fit.ipynb": notebook("print(2)"),
            "climate/requirements.txt": b"six==1.16.0\n",
        }
    )
    gateway = await make_gateway()
    status, job = await gateway.notify("climate", wait=False)
    assert status == 202, job
    found, raw = await read_stream(gateway, job["id"])

    *lines, end = found
    assert end.name == "end" and end.data["final"] is True
    assert end.data["job"]["state"] == "succeeded", job_summary(end.data["job"])
    assert {nb["name"] for nb in end.data["job"]["notebooks"]} == {"intro.ipynb", "fit.ipynb"}
    # Every line of the job once, in order, exactly as its stored log has them.
    assert [e.data["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert all(e.name == e.data["phase"] and e.data["job"] == job["id"] for e in lines)
    stored = await (await gateway.client.get(f"/jobs/{job['id']}", headers=gateway.auth())).json()
    assert [(e.data["seq"], e.data["message"]) for e in lines] == [
        (line["seq"], line["message"]) for line in stored["log"]
    ]
    assert f"id: {job['id']}:1\n" in raw
    assert ": keep-alive\n" in raw  # a build is longer than the test's keep-alive interval
    assert lines[0].name == "fetching" and lines[-1].name == "done"
    # Build output arrives among the steps, told apart from them.
    assert any(e.data["output"] and e.name == "building" for e in lines)
    for path in ("intro.ipynb", "fit.ipynb"):
        phases = [e.name for e in lines if e.data["notebook"] == path and not e.data["output"]]
        first = {phase: phases.index(phase) for phase in ("building", "starting", "ready")}
        assert first["building"] < first["starting"] < first["ready"], phases
        assert "pushing" in phases

    # A client that reconnects (Last-Event-ID) gets only what it has not seen.
    again, _ = await read_stream(gateway, job["id"], {"Last-Event-ID": f"{job['id']}:5"})
    assert [e.data["seq"] for e in again[:-1]] == list(range(6, len(lines) + 1))
    assert again[-1].name == "end"


async def test_a_failed_deploy_and_a_bad_stream_end_with_a_failed_event(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"broken/bad.ipynb": b"{ not json"})
    gateway = await make_gateway()
    status, job = await gateway.notify("broken", wait=False)
    assert status == 202
    found, _ = await read_stream(gateway, job["id"])
    failed = [e for e in found if e.name == "failed"]
    assert any(e.data["notebook"] == "bad.ipynb" for e in failed), found
    assert found[-1].name == "end" and found[-1].data["job"]["state"] == "failed"

    # Browsers cannot read a stream's status: the error is the stream's one event.
    for headers, status_code in (({}, 404), ({"Authorization": "Bearer wrong"}, 401)):
        response = await gateway.client.get(
            "/jobs/nope/events", headers={**gateway.auth(), **headers, **STREAM}
        )
        assert response.status == 200
        (event,) = [e async for e in parse_events(response.content)]
        assert event.name == "failed" and event.data["final"] is True
        assert event.data["status"] == status_code and event.data["reason"]
    # Other clients get the status and the error envelope.
    response = await gateway.client.get("/jobs/nope/events", headers=gateway.auth())
    assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"


async def test_a_job_folded_into_a_later_one_streams_that_ones_work(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/intro.ipynb": notebook("print(1)")})
    gateway = await make_gateway()
    first = (await gateway.notify("climate", wait=False))[1]
    second = (await gateway.notify("climate", wait=False))[1]
    third = (await gateway.notify("climate", wait=False))[1]  # folds the second into itself
    found, _ = await read_stream(gateway, second["id"])
    folded = next(e for e in found if e.data.get("message", "").startswith("folded into"))
    assert third["id"] in folded.data["message"]
    assert found[-1].data["job"]["id"] == third["id"]
    assert found[-1].data["job"]["state"] == "succeeded"
    await gateway.wait_for_job(first["id"])


async def health(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    response = await gateway.client.get("/health")
    return response.status, await response.json()


async def test_health_is_503_while_the_registry_or_the_git_remote_is_down(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    remote.commit({"climate/intro.ipynb": notebook("print(1)")})
    gateway = await make_gateway()
    status, body = await health(gateway)
    assert status == 200 and body["status"] == "ok", body
    assert set(body["checks"]) == {"docker", "git", "registry", "traefik"}
    assert all(check["ok"] for check in body["checks"].values()), body

    stack.registry.stop()
    try:
        status, body = await health(gateway)
        assert status == 503 and body["status"] == "unavailable", body
        assert body["checks"]["registry"]["ok"] is False
        assert stack.registry.host in body["checks"]["registry"]["message"]
        assert all(body["checks"][name]["ok"] for name in ("docker", "git", "traefik")), body
    finally:
        stack.registry.restart()
    assert (await health(gateway))[0] == 200

    moved = remote.bare.with_name("moved.git")
    shutil.move(remote.bare, moved)
    try:
        status, body = await health(gateway)
        assert status == 503 and body["checks"]["git"]["ok"] is False, body
        assert body["checks"]["registry"]["ok"] is True
    finally:
        shutil.move(moved, remote.bare)
    assert (await health(gateway))[0] == 200
    # No secret in what anyone may read.
    text = await (await gateway.client.get("/health")).text()
    assert stack.registry.password not in text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await gateway.client.get("/metrics", headers=gateway.auth())
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(await response.text())


async def test_metrics_count_builds_launches_jobs_and_failures(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/intro.ipynb": notebook("print(1)"), "broken/bad.ipynb": b"nope"})
    gateway = await make_gateway()
    assert (await gateway.client.get("/metrics")).status == 401  # AUTH_TOKEN unless public
    before = await scrape(gateway)
    assert before[("notebook_gateway_running_servers", (("kind", "published"),))] == 0
    assert (
        "notebook_gateway_jobs_total",
        (("action", "update"), ("outcome", "succeeded")),
    ) not in before

    body = await gateway.publish("climate")
    after = await scrape(gateway)
    assert (
        after[("notebook_gateway_jobs_total", (("action", "update"), ("outcome", "succeeded")))]
        == 1
    )
    assert after[("notebook_gateway_notebook_deploys_total", (("outcome", "built"),))] == 1
    builds = after[("notebook_gateway_build_duration_seconds_count", (("outcome", "succeeded"),))]
    assert builds == 2  # the project's environment, then the notebook's layer
    assert after[("notebook_gateway_build_duration_seconds_sum", (("outcome", "succeeded"),))] > 0
    launches = ("notebook_gateway_launch_duration_seconds_count",
                (("kind", "published"), ("outcome", "succeeded")))  # fmt: skip
    assert after[launches] == 1
    assert after[("notebook_gateway_running_servers", (("kind", "published"),))] == 1
    assert after[("notebook_gateway_jobs_in_progress", ())] == 0

    status, body = await gateway.notify("broken")
    assert status == 422, job_summary(body)
    failed = await scrape(gateway)
    assert failed[("notebook_gateway_failures_total", (("kind", "invalid_notebook"),))] == 1
    assert (
        failed[("notebook_gateway_jobs_total", (("action", "update"), ("outcome", "failed")))] == 1
    )
    assert failed[("notebook_gateway_notebook_deploys_total", (("outcome", "failed"),))] == 1


async def test_a_job_forgotten_while_followed_ends_the_stream_with_a_failed_event(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    """Periodic reconcile passes that find nothing to do leave no record; a follower of one
    learns it is gone instead of waiting forever."""
    remote.commit({"climate/intro.ipynb": notebook("print(1)")})
    gateway = await make_gateway()
    store, feeds = gateway.client.app[STORE], gateway.client.app[RUNNER].feeds
    job, _ = await store.create_job("*", JobAction.RECONCILE, origin=JobOrigin.RECONCILE)
    reading = asyncio.create_task(read_stream(gateway, job.id))
    await asyncio.sleep(0.5)
    assert not reading.done()
    await store.delete_job(job.id)
    feeds.close(job.id)
    found, _ = await reading
    assert [e.name for e in found] == ["failed"]
    assert found[0].data["final"] is True and "gone" in found[0].data["reason"]
