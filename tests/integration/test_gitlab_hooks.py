"""Webhook deliveries as GitLab sends them: the payloads of GitLab's documentation (project,
group and system hooks; push, tag, merge request, pipeline; the "Test" button), with GitLab's
headers, for a notebooks repository on the stand-in GitLab, reached over HTTP."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest

from tests.conftest import Gateway, MakeGateway, job_summary
from tests.support import jupyter
from tests.support.gitlab_examples import EVENTS, aimed_at, example
from tests.support.gitlab_server import MAINTAINER, OWNER, GitLab, Project
from tests.support.gitrepo import GitRemote, git, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

SECRET = "hook-" + secrets.token_urlsafe(16)
ZERO = "0" * 40


async def deliver(
    gateway: Gateway, lab: GitLab, body: dict[str, Any], event: str = "Push Hook", **headers: str
) -> tuple[int, dict[str, Any]]:
    sent = {**lab.hook_headers(SECRET, event), **headers}
    response = await gateway.client.post("/hooks/gitlab", data=json.dumps(body), headers=sent)
    return response.status, await response.json()


async def settled(gateway: Gateway, push_job: str) -> dict[str, dict[str, Any]]:
    """The push job's project jobs, finished."""
    push = await gateway.wait_for_job(push_job)
    assert push["state"] == "succeeded", job_summary(push)
    return {
        project: await gateway.wait_for_job(job_id)
        for project, job_id in push["result"]["jobs"].items()
    }


async def notebooks_on_gitlab(
    make_gateway: MakeGateway, lab: GitLab, gitlab_url: str, **env: str
) -> tuple[Gateway, Project]:
    """The notebooks repository as a GitLab project, and a gateway that publishes it with a
    Maintainer's project token (API and repository scopes)."""
    bot = lab.user("notebooks-bot", "glpat-bot-" + secrets.token_hex(8))
    project = lab.project("team/notebooks", {bot: MAINTAINER})
    project.remote.commit({"climate/a.ipynb": notebook("print('v1')")})
    gateway = await make_gateway(
        GITLAB_URL=gitlab_url,
        GITLAB_REPO_URL=f"{gitlab_url}/team/notebooks.git",
        GITLAB_ACCESS_TOKEN=bot.token,
        WEBHOOK_SECRET=SECRET,
        **env,
    )
    await gateway.publish("climate")
    return gateway, project


async def serves(gateway: Gateway, text: str) -> None:
    response = await gateway.client.get("/status", headers=gateway.auth())
    (url,) = [nb["url"] for p in (await response.json())["projects"] for nb in p["notebooks"]]
    async with jupyter.session() as http, http.get(url + "api/contents/a.ipynb") as answer:
        assert answer.status == 200 and text in json.dumps(await answer.json())


async def test_gitlabs_documented_deliveries(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    gateway, project = await notebooks_on_gitlab(make_gateway, lab, gitlab_url)
    other = lab.project("team/other", {})  # another project of the group (a group hook)
    other_commits = [other.remote.commit({"x.txt": b"x"}), other.remote.commit({"x.txt": b"y"})]

    # A push, by a project hook, a system hook, and a system hook's repository_update.
    head = project.remote.head()
    assert head
    for name, version in (
        ("push", "v2"),
        ("system_push", "v3"),
        ("system_repository_update", "v4"),
    ):
        before = head
        head = project.remote.commit({"climate/a.ipynb": notebook(f"print('{version}')")})
        status, body = await deliver(
            gateway, lab, aimed_at(name, lab, project, before, head), EVENTS[name]
        )
        assert status == 202 and body["status"] == "accepted", (name, body)
        jobs = await settled(gateway, body["job"]["id"])
        assert jobs["climate"]["state"] == "succeeded", job_summary(jobs["climate"])
        await serves(gateway, version)

    # What does not publish is ignored with a reason, never refused (GitLab would disable
    # the hook).
    ignored = {
        "tag_push": "tag pushes",
        "system_tag_push": "tag pushes",
        "merge_request": "only push events",
        "pipeline": "only push events",
    }
    for name, reason in ignored.items():
        status, body = await deliver(
            gateway, lab, aimed_at(name, lab, project, ZERO, head, "refs/tags/v1"), EVENTS[name]
        )
        assert status == 200 and reason in body["reason"], (name, body)
    # A group hook's push for another project of the group.
    status, body = await deliver(gateway, lab, aimed_at("push", lab, other, *other_commits))
    assert status == 200 and "not to the notebooks repository" in body["reason"], body

    # The "Test" button: on an empty project GitLab sends its sample data (another project),
    # on ours the push of its last three commits.
    status, body = await deliver(gateway, lab, example("test_sample"))
    assert status == 200 and body["status"] == "ignored", body
    last_three = project.remote.revs(ZERO, head)[-3:]
    sample = lab.push_event(project, last_three[0], last_three[-1])
    status, body = await deliver(gateway, lab, sample)
    assert status == 202, body
    jobs = await settled(gateway, body["job"]["id"])
    assert all(job["state"] == "succeeded" for job in jobs.values()), jobs
    await serves(gateway, "v4")


async def test_rollbacks_and_re_created_branches_run(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    gateway, project = await notebooks_on_gitlab(make_gateway, lab, gitlab_url)
    first = project.remote.head()
    assert first
    second = project.remote.commit({"climate/a.ipynb": notebook("print('v2')")})
    status, body = await deliver(gateway, lab, lab.push_event(project, first, second))
    assert status == 202, body
    await settled(gateway, body["job"]["id"])
    await serves(gateway, "v2")

    # A force push back to the first commit: another event, though the commits are known.
    git("reset", "--quiet", "--hard", first, cwd=project.remote.work)
    git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=project.remote.work)
    status, body = await deliver(gateway, lab, lab.push_event(project, second, first))
    assert status == 202 and body["status"] == "accepted", body
    await settled(gateway, body["job"]["id"])
    await serves(gateway, "v1")

    # The rollback undone: the same change as the first push, but a new event.
    git("reset", "--quiet", "--hard", second, cwd=project.remote.work)
    git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=project.remote.work)
    status, body = await deliver(gateway, lab, lab.push_event(project, first, second))
    assert status == 202 and body["status"] == "accepted", body
    await settled(gateway, body["job"]["id"])
    await serves(gateway, "v2")

    # The branch deleted, then created again at the first commit.
    status, body = await deliver(gateway, lab, lab.push_event(project, second, ZERO))
    assert status == 200 and "deleted" in body["reason"], body
    git("reset", "--quiet", "--hard", first, cwd=project.remote.work)
    git("push", "--quiet", "--force", "origin", "HEAD:main", cwd=project.remote.work)
    status, body = await deliver(gateway, lab, lab.push_event(project, ZERO, first))
    assert status == 202 and body["status"] == "accepted", body
    await settled(gateway, body["job"]["id"])
    await serves(gateway, "v1")

    # GitLab's retry of that delivery (its Idempotency-Key) runs nothing more.
    event = lab.push_event(project, ZERO, first)
    headers = {"Idempotency-Key": "retried-delivery"}
    status, body = await deliver(gateway, lab, event, **headers)
    again, repeat = await deliver(gateway, lab, event, **headers)
    assert (status, again) == (202, 200) and repeat["status"] == "duplicate", repeat


async def test_a_renamed_project_and_a_gitlab_under_a_sub_path(
    make_gateway: MakeGateway, gitlab_under_path: tuple[GitLab, str]
) -> None:
    """GITLAB_REPO_URL still names the old path; GitLab's payload the new one. The project's
    id, which GitLab gave for the old path, says it is ours."""
    lab, gitlab_url = gitlab_under_path
    gateway, project = await notebooks_on_gitlab(make_gateway, lab, gitlab_url)
    lab.rename(project, "science/notebooks")
    before = project.remote.head()
    assert before
    head = project.remote.commit({"climate/a.ipynb": notebook("print('renamed')")})
    event = lab.push_event(project, before, head)
    assert event["project"]["path_with_namespace"] == "science/notebooks"
    status, body = await deliver(gateway, lab, event)
    assert status == 202, body
    jobs = await settled(gateway, body["job"]["id"])
    assert jobs["climate"]["state"] == "succeeded", job_summary(jobs["climate"])
    await serves(gateway, "renamed")


async def test_another_repositorys_push_on_a_local_remote_runs_nothing(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    """With a file:// remote nothing in the payload can be compared: the pushed commit must
    be in the notebooks repository, and another repository's is not."""
    lab, _ = gitlab
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    someone = lab.user("someone", "someone-token")
    other = lab.project("someone/else", {someone: OWNER})
    before = other.remote.commit({"x.txt": b"1"})
    after = other.remote.commit({"x.txt": b"2"})
    gateway = await make_gateway(WEBHOOK_SECRET=SECRET)
    status, body = await deliver(gateway, lab, aimed_at("push", lab, other, before, after))
    assert status == 202, body
    push = await gateway.wait_for_job(body["job"]["id"])
    assert push["state"] == "succeeded" and push["result"]["jobs"] == {}, job_summary(push)
    log = [line["message"] for line in push["log"]]
    assert any("not in the notebooks repository" in line for line in log), log


async def test_gitlabs_deliveries_are_never_limited_and_may_be_large(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    gateway, project = await notebooks_on_gitlab(
        make_gateway, lab, gitlab_url, RATE_LIMIT="1", AUTH_FAILURE_LIMIT="2"
    )
    head = project.remote.head()
    assert head
    # Far more deliveries than RATE_LIMIT allows a client: all answered.
    answers = await asyncio.gather(
        *(
            deliver(gateway, lab, aimed_at("pipeline", lab, project, ZERO, head), "Pipeline Hook")
            for _ in range(10)
        )
    )
    assert {status for status, _ in answers} == {200}, answers
    # A push of 24 MB (GitLab sends up to 25 MB): answered, not refused as too large.
    big = lab.push_event(project, head, head)
    big["commits"] = [{**c, "message": "x" * (24 * 2**20)} for c in big["commits"][:1]] or [
        {"id": head, "message": "x" * (24 * 2**20), "author": {"email": "a@example.org"}}
    ]
    status, body = await deliver(gateway, lab, big)
    assert status in (200, 202), body
    # A wrong secret counts against the client; the right one still goes through.
    for expected in (401, 401, 429):
        status, body = await deliver(gateway, lab, {}, **{"X-Gitlab-Token": "wrong"})
        assert status == expected, body
    status, _ = await deliver(gateway, lab, aimed_at("merge_request", lab, project, ZERO, head))
    assert status == 200
