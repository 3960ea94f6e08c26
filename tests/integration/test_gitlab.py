"""The gateway against a GitLab that behaves as GitLab's documentation says: inherited and
invited membership, administrators, token scopes, rate limits, renamed projects, paths in
another case, an instance under a sub-path, protected branches."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

from tests.conftest import Gateway, MakeGateway
from tests.support.gitlab_server import DEVELOPER, MAINTAINER, REPORTER, GitLab
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def token(name: str) -> str:
    return f"glpat-{name}-{secrets.token_hex(8)}"


async def start(gateway: Gateway, user_token: str, path: str, sha: str) -> tuple[int, Any]:
    namespace, _, project = path.rpartition("/")
    response = await gateway.client.post(
        "/servers",
        json={"namespace": namespace, "project": project, "commit_sha": sha},
        headers=gateway.auth(user_token),
    )
    return response.status, await response.json()


async def test_access_is_what_gitlab_grants_through_groups_shares_and_administration(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    owner = lab.user("owner", token("owner"))
    inherited = lab.user("ines", token("ines"))  # a developer of the parent group
    invited = lab.user("ivan", token("ivan"))  # a developer of a group the project is shared with
    capped = lab.user("carl", token("carl"))  # a maintainer there, but the share is for reporters
    reporter = lab.user("rita", token("rita"))  # reporter of the project itself
    admin = lab.user("root", token("root"), admin=True)  # a member of nothing
    outsider = lab.user("olga", token("olga"))
    lab.group("science", {inherited: DEVELOPER})
    project = lab.project("science/lab/analysis", {owner: MAINTAINER, reporter: REPORTER})
    lab.share(project, lab.group("partners", {invited: DEVELOPER}), DEVELOPER)
    lab.share(project, lab.group("readers", {capped: MAINTAINER}), REPORTER)
    sha = project.remote.commit({"a.ipynb": notebook("1")})
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway(GITLAB_URL=gitlab_url)

    for user in (inherited, invited, admin):
        status, body = await start(gateway, user.token, "science/lab/analysis", sha)
        assert status == 201, (user.username, body)
    for user in (reporter, capped):
        status, body = await start(gateway, user.token, "science/lab/analysis", sha)
        assert status == 403 and "developer access" in body["error"]["message"], body
    status, body = await start(gateway, outsider.token, "science/lab/analysis", sha)
    # GitLab hides a private project from outsiders: as renku does, a missing project.
    assert status == 404 and "no GitLab project" in body["error"]["message"], body
    asked = [r for r in lab.requests if "/members/all/" in r]
    assert asked, lab.requests  # the gateway asked GitLab's own question


async def test_a_token_without_the_scope_is_told_which_one(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    git_only = lab.user("gita", token("gita"), scopes=("read_repository",))
    user_only = lab.user("ursula", token("ursula"), scopes=("read_user",))
    project = lab.project("group/analysis", {git_only: DEVELOPER, user_only: DEVELOPER})
    sha = project.remote.commit({"a.ipynb": notebook("1")})
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway(GITLAB_URL=gitlab_url)
    for user, scopes in ((git_only, "api read_api read_user"), (user_only, "api read_api")):
        status, body = await start(gateway, user.token, "group/analysis", sha)
        assert status == 403, body
        assert body["error"]["code"] == "insufficient_scope", body
        assert body["error"]["detail"]["scope"] == scopes.split(), body


async def test_a_limiting_gitlab_is_answered_with_503_at_once_and_blocks_nothing(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    users = [lab.user(f"user{n}", token(f"user{n}")) for n in range(12)]
    project = lab.project("group/analysis", {u: DEVELOPER for u in users})
    sha = project.remote.commit({"a.ipynb": notebook("1")})
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway(GITLAB_URL=gitlab_url)
    lab.limit(3600)  # GitLab says: come back in an hour
    started = time.monotonic()
    answers = await asyncio.gather(
        *(start(gateway, u.token, "group/analysis", sha) for u in users),
        gateway.notify("climate"),  # git and Docker work goes on meanwhile
    )
    *refused, (status, deployed) = answers
    assert status == 200 and deployed["notebooks"][0]["state"] == "running", deployed
    assert time.monotonic() - started < 60
    for status, body in refused:
        assert status == 503 and body["error"]["code"] == "gitlab_rate_limited", body
    response = await gateway.client.get("/servers", headers=gateway.auth(token("new")))
    assert response.status == 503 and int(response.headers["Retry-After"]) > 3000
    # Each request asked GitLab once: python-gitlab did not sleep and retry on the 429.
    assert len([r for r in lab.requests if r == "GET /api/v4/user"]) == len(users) + 1


async def test_a_renamed_project_in_another_case_on_a_gitlab_under_a_sub_path(
    make_gateway: MakeGateway, remote: GitRemote, gitlab_under_path: tuple[GitLab, str]
) -> None:
    """The server is asked for by the project's old path, in other letters; GitLab finds it
    (redirects, case-insensitive paths) and the gateway clones what GitLab says to clone."""
    lab, gitlab_url = gitlab_under_path
    alice = lab.user("alice", token("alice"))
    project = lab.project("team/old-name", {alice: DEVELOPER})
    sha = project.remote.commit({"a.ipynb": notebook("print('renamed')")})
    lab.rename(project, "science/new-name")
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway(GITLAB_URL=gitlab_url)
    status, body = await start(gateway, alice.token, "Team/Old-Name", sha)
    assert status == 201, body
    async with asyncio.timeout(300):
        while True:
            response = await gateway.client.get(
                f"/servers/{body['name']}", headers=gateway.auth(alice.token)
            )
            server = await response.json()
            if server["status"]["state"] != "starting":
                break
            await asyncio.sleep(1)
    assert server["status"]["state"] == "running", server


async def test_url_md_goes_to_the_protected_branch_with_a_maintainer_token_only(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    """GitLab protects the default branch: Developers may not push to it. A Developer token
    gets GitLab's refusal, told with the role it needs; a Maintainer token publishes."""
    lab, gitlab_url = gitlab
    developer = lab.user(
        "bot-dev", token("bot-dev"), scopes=("read_repository", "write_repository")
    )
    maintainer = lab.user("bot", token("bot"), scopes=("read_repository", "write_repository"))
    notebooks = lab.project("team/notebooks", {developer: DEVELOPER, maintainer: MAINTAINER})
    notebooks.remote.commit({"climate/a.ipynb": notebook("print('a')")})
    repository = {"GITLAB_REPO_URL": f"{gitlab_url}/team/notebooks.git", "GITLAB_URL": gitlab_url}

    gateway = await make_gateway(GITLAB_ACCESS_TOKEN=developer.token, **repository)
    status, body = await gateway.notify("climate")
    assert status == 502 and body["error"]["code"] == "publish_failed", body
    message = body["error"]["message"]
    assert "You are not allowed to push code to protected branches" in message, message
    assert "Maintainer role" in message and "'main'" in message, message
    assert developer.token not in str(body)
    assert notebooks.remote.read("URL.md") is None

    gateway = await make_gateway(GITLAB_ACCESS_TOKEN=maintainer.token, **repository)
    status, body = await gateway.notify("climate")
    assert status == 200, body
    assert "| a.ipynb | <http" in (notebooks.remote.read("URL.md") or "")
