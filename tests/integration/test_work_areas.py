"""People's work survives: a user's server keeps its files in a work area (a volume per user and
project) across idle culling, a killed container, a gateway restart and a new commit; every
work area is writable by the notebook user, published notebooks' included. Everything goes
through Jupyter's contents API via the real Traefik, as JupyterLab's file browser does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway, MakeGateway, Stack
from tests.integration.test_observability import scrape
from tests.integration.test_servers import as_user, call, gone, wait_until
from tests.support import jupyter
from tests.support.engine import docker, owned_volumes
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

IDLE = 6


async def contents(
    http: aiohttp.ClientSession, url: str, method: str, path: str, token: str | None, **body: Any
) -> tuple[int, Any]:
    headers = as_user(token) if token else {}
    kwargs: dict[str, Any] = {"json": body} if body else {}
    async with http.request(method, f"{url}api/contents{path}", headers=headers, **kwargs) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def creates_anywhere(http: aiohttp.ClientSession, url: str, token: str | None) -> None:
    """JupyterLab's "New notebook" at the top of the file browser, and a new file in a new
    folder."""
    status, created = await contents(http, url, "POST", "", token, type="notebook")
    assert status == 201 and created["path"] == "Untitled.ipynb", (status, created)
    status, folder = await contents(http, url, "PUT", "/notes", token, type="directory")
    assert status == 201, (status, folder)
    status, file = await contents(
        http, url, "PUT", "/notes/todo.txt", token, type="file", format="text", content="todo"
    )
    assert status == 201, (status, file)


async def read(http: aiohttp.ClientSession, url: str, path: str, token: str) -> Any:
    """A file's text or a notebook's first cell's source; None when it is not there."""
    status, model = await contents(http, url, "GET", f"/{path}", token)
    if status == 404:
        return None
    assert status == 200, (path, status, model)
    if model["type"] == "notebook":
        cells = model["content"]["cells"]
        return "".join(cells[0]["source"]) if cells else ""
    return model["content"]


async def files(gateway: Gateway, name: str, token: str, paths: list[str]) -> dict[str, Any]:
    status, server = await call(gateway, "GET", f"/servers/{name}", token)
    assert status == 200, server
    async with jupyter.session() as http:
        return {path: await read(http, server["url"], path, token) for path in paths}


async def start(gateway: Gateway, token: str, sha: str) -> dict[str, Any]:
    request = {"namespace": "group", "project": "analysis", "commit_sha": sha}
    status, server = await call(gateway, "POST", "/servers", token, json=request)
    assert status in (200, 201), server
    return await wait_until(gateway, server["name"], token, "running")


async def test_a_users_work_survives_culling_a_crash_a_restart_and_a_new_commit(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str], stack: Stack
) -> None:
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-work-000000000")
    bob = lab.user("bob", "glpat-bob-work-1111111111")
    project = lab.project("group/analysis", {alice: DEVELOPER, bob: DEVELOPER})
    first = project.remote.commit(
        {
            "fit.ipynb": notebook("print('fit')"),
            "data/points.csv": b"x,y\n",
            "README.md": b"# v1\n",
        }
    )
    remote.commit({"published/p.ipynb": notebook("print('p')")})
    gateway = await make_gateway(
        GITLAB_URL=gitlab_url, CULL_IDLE_TIMEOUT=str(IDLE), CULL_INTERVAL="1"
    )
    admin = gateway.settings.auth_token.get_secret_value()

    # A published notebook's work area is the notebook user's too (gone at the next deploy).
    body = await gateway.publish("published")
    async with jupyter.session() as http:
        await creates_anywhere(http, body["notebooks"][0]["url"], None)

    # Alice's server: new files anywhere, her notes, an edited notebook.
    server = await start(gateway, alice.token, first)
    name, volume = server["name"], server["volume"]["name"]
    assert volume in owned_volumes(gateway.instance)
    async with jupyter.session() as http:
        url = server["url"]
        await creates_anywhere(http, url, alice.token)
        status, _ = await contents(
            http, url, "PUT", "/fit.ipynb", alice.token,
            type="notebook", format="json", content=json.loads(notebook("print('mine')")),
        )  # fmt: skip
        assert status == 200
    paths = ["Untitled.ipynb", "notes/todo.txt", "fit.ipynb", "README.md", "data/points.csv"]
    work: dict[str, str | None] = {
        "Untitled.ipynb": "",  # a new notebook: no cells
        "notes/todo.txt": "todo",
        "fit.ipynb": "print('mine')",
        "README.md": "# v1\n",
        "data/points.csv": "x,y\n",
    }

    async def has_work(name: str) -> None:
        assert await files(gateway, name, alice.token, paths) == work

    await has_work(name)

    # Culled for idleness: the work area stays, and the next start has it all.
    async with asyncio.timeout(IDLE + 40):
        await gone(gateway, name, alice.token)
    assert volume in owned_volumes(gateway.instance)
    server = await start(gateway, alice.token, first)
    assert server["name"] == name and server["volume"]["name"] == volume
    await has_work(name)

    # Killed: asked for again, it starts afresh, with the work.
    (container,) = docker("ps", "-q", "--filter", f"label=notebook-gateway.server={name}").split()
    docker("kill", container)
    async with asyncio.timeout(60):
        while True:
            _, killed = await call(gateway, "GET", f"/servers/{name}", alice.token)
            if killed["status"]["state"] == "failed":
                break
            await asyncio.sleep(0.5)
    await start(gateway, alice.token, first)
    await has_work(name)

    # The gateway restarted (same instance, state, port and token), culling off from now on.
    await gateway.client.close()
    gateway = await make_gateway(
        GATEWAY_INSTANCE=gateway.instance,
        GATEWAY_PORT=str(gateway.settings.gateway_port),
        AUTH_TOKEN=admin,
        STATE_DIR=str(gateway.settings.state_dir),
        BASE_DOMAIN=gateway.settings.base_domain,
        GITLAB_URL=gitlab_url,
        CULL_IDLE_TIMEOUT="0",
    )
    await has_work(name)
    status, _ = await call(gateway, "DELETE", f"/servers/{name}", alice.token)
    assert status == 204
    await gone(gateway, name, alice.token)
    assert volume in owned_volumes(gateway.instance)  # stopped: kept

    # A new commit: what Alice did not change follows it, what she changed stays hers.
    second = project.remote.commit(
        {
            "fit.ipynb": notebook("print('fit v2')"),
            "README.md": b"# v2\n",
            "data/points.csv": None,
            "added.ipynb": notebook("print('added')"),
        }
    )
    newer = await start(gateway, alice.token, second)
    assert newer["name"] != name and newer["volume"]["name"] == volume
    name = newer["name"]
    work.update({"README.md": "# v2\n", "data/points.csv": None})
    paths.append("added.ipynb")
    work["added.ipynb"] = "print('added')"
    await has_work(name)
    status, logs = await call(gateway, "GET", f"/logs/{name}?max_lines=0", alice.token)
    assert "kept your version of fit.ipynb" in logs["jupyter-server"]

    # Bob's server of the same project has a work area of his own; he sees nothing of hers.
    bobs = await start(gateway, bob.token, second)
    assert bobs["volume"]["name"] != volume
    bob_files = await files(gateway, bobs["name"], bob.token, ["notes/todo.txt", "fit.ipynb"])
    assert bob_files == {"notes/todo.txt": None, "fit.ipynb": "print('fit v2')"}
    mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", _container(bobs)))
    assert [m["Name"] for m in mounts] == [bobs["volume"]["name"]]
    status, _ = await call(gateway, "GET", f"/servers/{name}", bob.token)
    assert status == 404
    status, _ = await call(gateway, "GET", "/volumes", bob.token)
    assert status == 401

    # The admin's view: both work areas, their sizes and servers; one in use is not removed.
    status, listed = await call(gateway, "GET", "/volumes", admin)
    assert status == 200
    by_name = {v["name"]: v for v in listed["volumes"]}
    assert by_name[volume]["user"] == "alice" and by_name[volume]["servers"] == [name]
    assert by_name[bobs["volume"]["name"]]["user"] == "bob"
    status, body = await call(gateway, "DELETE", f"/volumes/{volume}", admin)
    assert status == 409 and name in body["error"]["message"], body
    # Sizes for an operator to act on: the engine counts them, no engine limits them.
    assert isinstance(by_name[volume]["size"], int) and by_name[volume]["size"] > 0
    metrics = await scrape(gateway)
    sized = metrics[("notebook_gateway_work_area_bytes", (("user", "alice"), ("volume", volume)))]
    assert sized == by_name[volume]["size"]
    assert volume in owned_volumes(gateway.instance)

    # Stopped with remove=true: the work area goes with the server.
    status, _ = await call(gateway, "DELETE", f"/servers/{name}?remove=true", alice.token)
    assert status == 204
    await gone(gateway, name, alice.token)
    async with asyncio.timeout(30):
        while True:
            if volume not in owned_volumes(gateway.instance):
                break
            await asyncio.sleep(0.5)
    status, listed = await call(gateway, "GET", "/volumes", admin)
    assert volume not in {v["name"] for v in listed["volumes"]}
    assert bobs["volume"]["name"] in owned_volumes(gateway.instance)


def _container(server: dict[str, Any]) -> str:
    found = docker("ps", "-q", "--filter", f"label=notebook-gateway.server={server['name']}")
    (container,) = found.split()
    return container
