"""The servers API end to end: users authenticated against a GitLab (through python-gitlab),
their servers built and run on the real engine, and guarded at the real Traefik."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.sessions import SESSION_COOKIE, Signer
from tests.conftest import Gateway, MakeGateway, Stack, engine_events, job_summary
from tests.support import jupyter
from tests.support.engine import docker, owned_containers, owned_images
from tests.support.gitlab_server import DEVELOPER, MAINTAINER, REPORTER, GitLab
from tests.support.gitrepo import GitRemote, notebook
from tests.support.package_index import package_index

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def as_user(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    gateway: Gateway, method: str, path: str, token: str | None, **kwargs: Any
) -> tuple[int, Any]:
    """The API as a user calls it (no token: as nobody)."""
    headers = as_user(token) if token else {}
    response = await gateway.client.request(method, path, headers=headers, **kwargs)
    body = await response.json() if response.status != 204 else None
    return response.status, body


async def wait_until(gateway: Gateway, name: str, token: str, state: str) -> dict[str, Any]:
    async with asyncio.timeout(300):
        while True:
            status, server = await call(gateway, "GET", f"/servers/{name}", token)
            assert status == 200, server
            if server["status"]["state"] == state:
                return dict(server)
            assert server["status"]["state"] in ("starting", "running"), server["status"]
            await asyncio.sleep(1)


async def gone(gateway: Gateway, name: str, token: str) -> None:
    async with asyncio.timeout(60):
        while True:
            status, _ = await call(gateway, "GET", f"/servers/{name}", token)
            if status == 404:
                return
            await asyncio.sleep(0.5)


async def log_in(http: aiohttp.ClientSession, url: str, token: str) -> aiohttp.ClientResponse:
    """What a browser does: open the URL, land on the login page, send the token, come back."""
    async with http.get(url) as page:
        assert page.status == 200 and "/auth/login" in str(page.url), (page.status, page.url)
        form = {"token": token, "next": page.url.query["next"]}
        login = str(page.url).split("?")[0]
    response = await http.post(login, data=form)
    await response.read()
    return response


async def test_users_start_open_and_stop_their_own_servers(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str], stack: Stack
) -> None:
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-000000000000000")
    bob = lab.user("bob", "glpat-bob-1111111111111111")
    carol = lab.user("carol", "glpat-carol-22222222222222")
    project = lab.project("group/analysis", {alice: DEVELOPER, bob: DEVELOPER, carol: REPORTER})
    sha = project.remote.commit(
        {
            "notebooks/fit.ipynb": notebook("print('fit', 6 * 7)"),
            "data/points.csv": b"x,y\n1,2\n",
            "README.md": b"# analysis\n",
        }
    )
    remote.commit({"published/p.ipynb": notebook("print('p')")})
    gateway = await make_gateway(GITLAB_URL=gitlab_url)
    body = await gateway.publish("published")
    request = {
        "namespace": "group",
        "project": "analysis",
        "commit_sha": sha,
        "notebook": "notebooks/fit.ipynb",
    }

    # Server options, in renku's shape, and values outside them refused.
    status, options = await call(gateway, "GET", "/server_options", alice.token)
    assert status == 200 and options["cpu_request"]["options"] == [0.5, 1.0, 2.0]
    assert set(options) == {"defaultUrl", "cpu_request", "mem_request", "cloudstorage"}
    assert {"displayName", "type", "default", "options", "order"} <= set(options["mem_request"])
    status, body = await call(
        gateway,
        "POST",
        "/servers",
        alice.token,
        json={**request, "serverOptions": {"cpu_request": 64}},
    )
    assert status == 400 and "cpu_request" in body["error"]["message"]

    # Without developer access: refused, nothing built.
    images = owned_images(gateway.instance)
    status, body = await call(gateway, "POST", "/servers", carol.token, json=request)
    assert status == 403 and body["error"]["code"] == "forbidden", body
    assert owned_images(gateway.instance) == images

    # Alice starts a server; asking again gives the same one.
    status, server = await call(gateway, "POST", "/servers", alice.token, json=request)
    assert status == 201, server
    name = server["name"]
    ours = {
        "namespace": "group", "project": "analysis", "branch": "main", "commit_sha": sha,
        "notebook": "notebooks/fit.ipynb", "user": "alice",
    }  # fmt: skip
    assert ours.items() <= server["annotations"].items()
    assert server["annotations"]["renku.io/commit-sha"] == sha
    assert server["resources"]["requests"] == {"cpu": 1.0, "memory": "1G"}
    assert (
        len(name) <= 63
        and server["url"]
        == f"http://{name}.{gateway.settings.base_domain}:{stack.traefik.web_port}/"
    )
    status, again = await call(gateway, "POST", "/servers", alice.token, json=request)
    assert status == 200 and again["name"] == name
    server = await wait_until(gateway, name, alice.token, "running")
    assert server["image"]
    # Running first; the registry's copy of the image follows.
    async with asyncio.timeout(120):
        while True:
            if server["image"].rsplit(":", 1)[1] in stack.registry.tags(server["image"]):
                break
            await asyncio.sleep(0.5)

    # Alice logs in through the browser flow and runs the notebook's code through Traefik.
    async with jupyter.session(browser=True) as http:
        landed = await log_in(http, server["url"], alice.token)
        assert landed.status == 200 and landed.url.path == "/lab/tree/notebooks/fit.ipynb", (
            landed.url
        )
        cookie = http.cookie_jar.filter_cookies(landed.url)[SESSION_COOKIE]
        assert cookie.value and alice.token not in cookie.value
        assert await jupyter.execute(http, server["url"], "print('fit', 6 * 7)") == "fit 42\n"

    # Bob cannot see, stop, read or open it.
    status, listed = await call(gateway, "GET", "/servers", bob.token)
    assert status == 200 and name not in listed["servers"]
    for method, path in (
        ("GET", f"/servers/{name}"),
        ("DELETE", f"/servers/{name}"),
        ("GET", f"/logs/{name}"),
    ):
        status, body = await call(gateway, method, path, bob.token)
        assert status == 404, (method, path, body)
    async with jupyter.session() as http:
        async with http.get(server["url"] + "api", headers=as_user(bob.token)) as answer:
            assert answer.status == 403
        async with http.get(server["url"] + "api") as answer:
            assert answer.status == 401  # no credentials at all
        forged = Signer(gateway.settings.auth_token.get_secret_value()).sign(
            "session", {"u": alice.id, "admin": False, "h": "another.host"}, 600
        )
        async with http.get(
            server["url"] + "api", headers={"Cookie": f"{SESSION_COOKIE}={forged}"}
        ) as answer:
            assert answer.status == 401  # a cookie of another host is no cookie here
        async with http.get(server["url"] + "api", headers=as_user(alice.token)) as answer:
            assert answer.status == 200  # API clients may send their token
    async with jupyter.session(browser=True) as http:
        refused = await log_in(http, server["url"], bob.token)
        assert refused.status == 403 and "belongs to someone else" in await refused.text()

    # The admin sees every server, the published notebook included, and may open them.
    admin = gateway.settings.auth_token.get_secret_value()
    status, listed = await call(gateway, "GET", "/servers", admin)
    assert name in listed["servers"]
    assert any(s["annotations"]["notebook"] == "p.ipynb" for s in listed["servers"].values())
    status, filtered = await call(gateway, "GET", "/servers?project=analysis", admin)
    assert list(filtered["servers"]) == [name]
    async with (
        jupyter.session() as http,
        http.get(server["url"] + "api", headers=as_user(admin)) as answer,
    ):
        assert answer.status == 200

    # Bob at the same commit gets a server of his own on the same image: nothing is rebuilt.
    images = owned_images(gateway.instance)
    status, bobs = await call(gateway, "POST", "/servers", bob.token, json=request)
    assert status == 201 and bobs["name"] != name
    bobs = await wait_until(gateway, bobs["name"], bob.token, "running")
    assert bobs["image"] == server["image"] and owned_images(gateway.instance) == images
    # ... and stops it the hard way.
    status, _ = await call(gateway, "DELETE", f"/servers/{bobs['name']}?forced=true", bob.token)
    assert status == 204
    await gone(gateway, bobs["name"], bob.token)

    # Users may also say "token", as renku's clients do; GitLab is asked once, then cached.
    asked = sum(r == "GET /api/v4/user" for r in lab.requests)
    response = await gateway.client.get(
        "/servers", headers={"Authorization": f"token {alice.token}"}
    )
    assert response.status == 200 and name in (await response.json())["servers"]
    assert sum(r == "GET /api/v4/user" for r in lab.requests) == asked

    # The admin may stop a published notebook (a reconcile pass brings it back).
    published = next(
        n for n, s in listed["servers"].items() if s["annotations"]["notebook"] == "p.ipynb"
    )
    status, _ = await call(gateway, "DELETE", f"/servers/{published}", admin)
    assert status == 204
    assert not [
        c
        for c in owned_containers(gateway.instance)
        if published in docker("inspect", "--format", "{{.Name}}", c)
    ]

    # Logs come back.
    status, logs = await call(gateway, "GET", f"/logs/{name}?max_lines=40", alice.token)
    assert status == 200 and "Jupyter Server" in logs["jupyter-server"]
    assert len(logs["jupyter-server"].splitlines()) <= 40

    # Alice's token is in none of what the gateway made.
    (container,) = [
        c
        for c in owned_containers(gateway.instance)
        if name in docker("inspect", "--format", "{{.Name}}", c)
    ]
    inspected = docker("inspect", container)
    assert alice.token not in inspected
    layers = subprocess.run(
        ["docker", "save", json.loads(inspected)[0]["Config"]["Image"]],
        capture_output=True,
        check=True,
    ).stdout
    assert alice.token.encode() not in layers
    state = gateway.settings.state_dir
    assert all(alice.token.encode() not in p.read_bytes() for p in state.rglob("*") if p.is_file())

    # Alice stops it; it is gone.
    status, _ = await call(gateway, "DELETE", f"/servers/{name}", alice.token)
    assert status == 204
    await gone(gateway, name, alice.token)
    assert container not in owned_containers(gateway.instance)


async def test_identical_builds_asked_for_at_once_run_once(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    erin = lab.user("erin", "glpat-erin-444444444444444")
    finn = lab.user("finn", "glpat-finn-555555555555555")
    project = lab.project("group/shared", {erin: DEVELOPER, finn: DEVELOPER})
    sha = project.remote.commit(
        {"a.ipynb": notebook("print('a')"), "requirements.txt": b"# nothing\n"}
    )
    gateway = await make_gateway(GITLAB_URL=gitlab_url)
    request = {"namespace": "group", "project": "shared", "commit_sha": sha}
    since = time.time()
    answers = await asyncio.gather(
        *(call(gateway, "POST", "/servers", user.token, json=request) for user in (erin, finn))
    )
    assert [status for status, _ in answers] == [201, 201], answers
    servers = [
        await wait_until(gateway, body["name"], user.token, "running")
        for (_, body), user in zip(answers, (erin, finn), strict=True)
    ]
    assert servers[0]["image"] == servers[1]["image"]
    # One environment and one image built, though both servers asked for them.
    built = [
        e.name for e in engine_events(gateway.instance, since, time.time() + 1) if e.action == "tag"
    ]
    # The environment is built in two steps: its files (staged), then its requirements,
    # installed in a container of their own and committed under its name.
    staged = [name for name in built if name.endswith("-setup")]
    final = [name for name in built if name not in staged]
    assert len(staged) == 1 and len(final) == 2 and servers[0]["image"] in final, built
    assert any("--env:" in name for name in final), built


async def test_failures_are_told_in_words(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    dana = lab.user("dana", "glpat-dana-333333333333333")
    project = lab.project("group/broken", {dana: DEVELOPER})
    sha = project.remote.commit(
        {"a.ipynb": notebook("1"), "requirements.txt": b"no-such-package-ngw-test==1\n"}
    )
    gateway = await make_gateway(GITLAB_URL=gitlab_url)
    base = {"namespace": "group", "project": "broken", "commit_sha": sha}
    status, body = await call(
        gateway, "POST", "/servers", dana.token, json={**base, "notebook": "missing.ipynb"}
    )
    assert status == 201
    failed = await wait_until(gateway, body["name"], dana.token, "failed")
    assert failed["status"]["message"] == "there is no notebook 'missing.ipynb' at this commit"

    # Started again at once while it still stops: it stops, then starts afresh.
    status, _ = await call(gateway, "DELETE", f"/servers/{body['name']}", dana.token)
    assert status == 204
    status, body = await call(gateway, "POST", "/servers", dana.token, json=base)
    assert status == 201, body
    failed = await wait_until(gateway, body["name"], dana.token, "failed")
    assert failed["status"]["message"].startswith("the image build failed")
    status, logs = await call(gateway, "GET", f"/logs/{body['name']}", dana.token)
    assert "no-such-package-ngw-test" in logs["jupyter-server"]  # the build's output

    status, body = await call(
        gateway, "POST", "/servers", dana.token, json={**base, "commit_sha": "f" * 40}
    )
    assert status == 404 and "no commit" in body["error"]["message"]


async def test_published_notebooks_can_be_protected_the_same_way(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    bot = lab.user("ci-bot", "glpat-bot-4444444444444444")
    erin = lab.user("erin", "glpat-erin-555555555555555")
    frank = lab.user("frank", "glpat-frank-66666666666666")
    notebooks = lab.project("team/notebooks", {bot: MAINTAINER, erin: REPORTER})
    notebooks.remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway(
        GITLAB_URL=gitlab_url,
        GITLAB_REPO_URL=f"{gitlab_url}/team/notebooks.git",
        GITLAB_ACCESS_TOKEN=bot.token,
        PROTECT_PUBLISHED="true",
    )
    status, body = await gateway.notify("climate")
    assert status == 200, job_summary(body)  # the gateway's own readiness probe passes the guard
    url = body["notebooks"][0]["url"]
    assert "| a.ipynb |" in (notebooks.remote.read("URL.md") or "")  # pushed with the bot's token

    async with jupyter.session() as http:
        async with http.get(url + "api") as answer:
            assert answer.status == 401
        async with http.get(url + "api", headers=as_user(frank.token)) as answer:
            assert answer.status == 403
        async with http.get(url + "api", headers=as_user(erin.token)) as answer:
            assert answer.status == 200
    async with jupyter.session(browser=True) as http:
        landed = await log_in(http, url, erin.token)
        assert landed.status == 200 and landed.url.path == "/lab/tree/a.ipynb"
        assert await jupyter.execute(http, url, "print('a')") == "a\n"
    async with jupyter.session(browser=True) as http:
        refused = await log_in(http, url, frank.token)
        assert (
            refused.status == 403
            and "read access to the notebooks repository" in await refused.text()
        )


async def test_a_users_build_has_less_time_than_the_operators(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str], tmp_path: Path
) -> None:
    """A user's requirements.txt runs code at build time (here, one that never ends): it is
    stopped after SERVER_BUILD_TIMEOUT, which is shorter than the repository's BUILD_TIMEOUT
    by default, and the server says why."""
    lab, gitlab_url = gitlab
    gail = lab.user("gail", "glpat-gail-666666666666666")
    project = lab.project("group/slow", {gail: DEVELOPER})
    with package_index(tmp_path / "index") as index:
        index.sdist("nbgw-endless-build", "import time\ntime.sleep(3600)")
        sha = project.remote.commit(
            {"a.ipynb": notebook("1"), "requirements.txt": index.requirements("nbgw-endless-build")}
        )
        gateway = await make_gateway(GITLAB_URL=gitlab_url, SERVER_BUILD_TIMEOUT="15")
        assert gateway.settings.build_timeout == 1200  # the operator's repository keeps more
        status, body = await call(
            gateway,
            "POST",
            "/servers",
            gail.token,
            json={"namespace": "group", "project": "slow", "commit_sha": sha},
        )
        assert status == 201, body
        started = time.monotonic()
        failed = await wait_until(gateway, body["name"], gail.token, "failed")
    assert time.monotonic() - started < 120
    assert failed["status"]["message"] == (
        "the image build failed: installing the requirements did not finish within 15 s"
    ), failed
