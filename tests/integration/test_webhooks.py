"""GitLab push webhooks against the real engine, registry, Traefik and git, with deliveries
shaped like GitLab's documented push events for real commits."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from gateway import naming
from tests.conftest import Gateway, MakeGateway, job_summary
from tests.support.engine import owned_images
from tests.support.gitlab_events import ZERO, commit, headers, push_event
from tests.support.gitrepo import GitRemote, git, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

SECRET = "hook-" + secrets.token_urlsafe(16)


async def deliver(
    gateway: Gateway, body: dict[str, Any], secret: str | None = SECRET, **extra: str
) -> tuple[int, dict[str, Any]]:
    sent = headers(secret or "", **extra)
    if secret is None:
        del sent["X-Gitlab-Token"]
    response = await gateway.client.post("/hooks/gitlab", json=body, headers=sent)
    return response.status, await response.json()


async def children_of(gateway: Gateway, push_job_id: str) -> dict[str, dict[str, Any]]:
    """Wait for the push job and the project jobs it queued; project -> finished job."""
    push = await gateway.wait_for_job(push_job_id)
    assert push["state"] == "succeeded", job_summary(push)
    return {
        project: await gateway.wait_for_job(job_id)
        for project, job_id in push["result"]["jobs"].items()
    }


async def job_count(gateway: Gateway) -> int:
    response = await gateway.client.get("/jobs?limit=500", headers=gateway.auth())
    return len((await response.json())["jobs"])


async def test_push_events(make_gateway: MakeGateway, remote: GitRemote) -> None:
    gateway = await make_gateway(WEBHOOK_SECRET=SECRET)

    # A new branch: `before` is all zeros, every project is published.
    first = remote.commit(
        {"climate/a.ipynb": notebook("print('a')"), "genomics/g.ipynb": notebook("print('g')")}
    )
    status, body = await deliver(gateway, push_event(ZERO, first))
    assert status == 202 and body["status"] == "accepted", body
    assert body["job"]["state"] in ("queued", "running")  # acknowledged before the work
    jobs = await children_of(gateway, body["job"]["id"])
    assert set(jobs) == {"climate", "genomics"}
    assert all(job["state"] == "succeeded" for job in jobs.values())
    url_md = remote.read("URL.md") or ""
    assert "| a.ipynb |" in url_md and "| g.ipynb |" in url_md

    # 25 commits in one push; GitLab lists only 20, the one touching genomics is not among them.
    before = remote.head()
    assert before is not None
    shas = []
    for i in range(25):
        path = "genomics/g.ipynb" if i == 22 else "climate/a.ipynb"
        shas.append(remote.commit({path: notebook(f"print({i})")}, f"Edit {i}"))
    event = push_event(before, shas[-1], commits=[commit(s, "Edit") for s in shas])
    assert len(event["commits"]) == 20 and event["total_commits_count"] == 25
    status, body = await deliver(gateway, event)
    assert status == 202, body
    jobs = await children_of(gateway, body["job"]["id"])
    assert set(jobs) == {"climate", "genomics"}
    assert {nb["action"] for job in jobs.values() for nb in job["notebooks"]} == {"built"}

    # A force push rewrites history: the diff from the old tip still tells what changed.
    old_tip = remote.head()
    assert old_tip is not None
    git("reset", "--quiet", "--hard", before, cwd=remote.work)
    git("commit", "--quiet", "--allow-empty", "-m", "Rewritten", cwd=remote.work)
    git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=remote.work)
    rewritten = remote.head()
    assert rewritten is not None
    status, body = await deliver(gateway, push_event(old_tip, rewritten))
    assert status == 202, body
    jobs = await children_of(gateway, body["job"]["id"])
    assert set(jobs) == {"climate", "genomics"}  # both went back to their old content
    assert all(job["state"] == "succeeded" for job in jobs.values())

    # Branch deletion, tags, other branches: 200 with the reason, nothing queued.
    count = await job_count(gateway)
    for event, reason in [
        (push_event(rewritten, ZERO), "deleted"),
        (push_event(ZERO, rewritten, branch="v1.0", kind="tag_push"), "tag"),
        (push_event(ZERO, rewritten, branch="feature"), "branch 'feature'"),
    ]:
        kind = "Tag Push Hook" if event["object_kind"] == "tag_push" else "Push Hook"
        status, body = await deliver(gateway, event, kind=kind)
        assert status == 200 and body["status"] == "ignored" and reason in body["reason"], body
    assert await job_count(gateway) == count

    # The gateway's own URL.md commit is recognised and ignored.
    tip = remote.head()
    assert tip is not None
    bot = gateway.settings.git_bot_email
    status, body = await deliver(
        gateway, push_event(rewritten, tip, commits=[commit(tip, "URL.md", bot)])
    )
    assert status == 200 and "URL.md" in body["reason"], body
    # Even unrecognised (no commit list), it changes no project.
    status, body = await deliver(gateway, push_event(rewritten, tip, commits=[], total=1))
    assert status == 202, body
    assert await children_of(gateway, body["job"]["id"]) == {}


async def test_duplicate_deliveries_run_once(make_gateway: MakeGateway, remote: GitRemote) -> None:
    gateway = await make_gateway(WEBHOOK_SECRET=SECRET)
    base = remote.commit({"climate/README.md": b"notes\n"})
    head = remote.commit({"climate/a.ipynb": notebook("print('a')")})
    commits_before = len(remote.log())

    # GitLab retrying one delivery ten times at once (same Idempotency-Key).
    event = push_event(base, head)
    answers = await asyncio.gather(
        *(deliver(gateway, event, key="delivery-1", event="push-1") for _ in range(10))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 9 + [202], answers
    assert {body["job"]["id"] for _, body in answers} == {answers[0][1]["job"]["id"]}
    # The same push through another hook (another key, the same event) is the same work too.
    status, body = await deliver(gateway, event, key="delivery-from-a-group-hook", event="push-1")
    assert status == 200 and body["status"] == "duplicate"

    jobs = await children_of(gateway, answers[0][1]["job"]["id"])
    assert list(jobs) == ["climate"] and jobs["climate"]["state"] == "succeeded"
    assert len(owned_images(gateway.instance, naming.KIND_PUBLISHED)) == 1  # one build
    assert len(remote.log()) == commits_before + 1  # one URL.md commit


async def test_wrong_or_missing_secret_is_refused_without_side_effects(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    head = remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway(WEBHOOK_SECRET=SECRET)
    for secret in ("wrong-secret", None, ""):
        status, body = await deliver(gateway, push_event(ZERO, head), secret=secret)
        assert status == 401 and body["error"]["code"] == "unauthorized", body
        assert SECRET not in str(body)
    assert await job_count(gateway) == 0
    assert remote.read("URL.md") is None

    # Without WEBHOOK_SECRET the endpoint is off rather than open.
    closed = await make_gateway()
    status, body = await deliver(closed, push_event(ZERO, head))
    assert status == 404 and "WEBHOOK_SECRET" in body["error"]["message"]
