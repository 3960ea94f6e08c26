"""renku's own clients against the servers API: the gateway's live answers held against
renku-notebooks' schemas at 1.10.0 and 1.31.1 (tests/support/renku_schemas.py), and read the
way renku-python and renku-ui read them (tests/support/renku_clients.py). The servers API is
reached where renku's clients look for it: under SERVERS_API_PREFIX=/api/notebooks."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import jsonschema
import pytest

from tests.conftest import Gateway, MakeGateway, Stack
from tests.integration.test_servers import call as servers_api
from tests.support import renku_clients, renku_schemas
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, git, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

API = "/api/notebooks"


def conforms(answer: Any, kind: str) -> None:
    """The answer as renku 1.10 and 1.31 would have sent it (types, required keys)."""
    for release, schemas in renku_schemas.RELEASES.items():
        schema = schemas[kind] if kind != "list" else renku_schemas.server_list(schemas["server"])
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(answer)]
        assert not errors, (release, kind, errors, answer)


async def call(
    gateway: Gateway, method: str, path: str, token: str | None, **kwargs: Any
) -> tuple[int, Any]:
    """The servers API where renku's clients look for it."""
    return await servers_api(gateway, method, API + path, token, **kwargs)


async def until(gateway: Gateway, name: str, token: str, state: str) -> dict[str, Any]:
    async with asyncio.timeout(300):
        while True:
            status, server = await call(gateway, "GET", f"/servers/{name}", token)
            assert status == 200, server
            conforms(server, "server")
            if server["status"]["state"] == state:
                return dict(server)
            await asyncio.sleep(1)


async def test_renkus_clients_start_read_and_stop_a_server(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str], stack: Stack
) -> None:
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-renku-00000000")
    project = lab.project("Group/Analysis", {alice: DEVELOPER})
    first = project.remote.commit({"fit.ipynb": notebook("print('fit', 6 * 7)")})
    git("--git-dir", str(project.remote.bare), "branch", "old", first)
    sha = project.remote.commit({"README.md": b"# analysis\n"}, "Second")
    remote.commit({"published/p.ipynb": notebook("print('p')")})
    missing_image = f"{stack.registry.host}/renku/nothing:1"
    gateway = await make_gateway(
        GITLAB_URL=gitlab_url,
        SERVERS_API_PREFIX=API,
        ALLOWED_IMAGES=f"{stack.base_image},{stack.registry.host}/*",
    )
    body = await gateway.publish("published")
    token = alice.token

    # The options, in both releases' shapes.
    status, options = await call(gateway, "GET", "/server_options", token)
    assert status == 200
    conforms(options, "options")

    # The image check renku-python makes before it starts, and renku-ui before it launches.
    async def available(image: str, who: str | None = token) -> bool:
        status, _ = await call(gateway, "GET", "/images", who, params={"image_url": image})
        return renku_clients.docker_image_available(status)

    assert await available(stack.base_image)
    assert not await available(missing_image)  # allowed, but it does not exist
    assert not await available("elsewhere.example.org/any:1")  # exists or not: not allowed
    status, body = await call(gateway, "GET", "/images", token, params={"image_url": "a b"})
    assert status == 400, body
    status, _ = await call(gateway, "GET", "/images", None, params={"image_url": "x:1"})
    assert status == 401

    # What cannot start is refused before anything is recorded: 404 for what is missing,
    # 422 for what cannot be had here, 400 for what is malformed.
    python_start = renku_clients.session_start_payload(
        stack.base_image, "group", "analysis", sha[:7], "main"
    )
    refusals = [
        ({**python_start, "project": "nothing"}, 404, "no GitLab project"),
        ({**python_start, "branch": "no-such-branch"}, 404, "no branch"),
        ({**python_start, "commit_sha": "0000000"}, 404, "no commit"),
        ({**python_start, "branch": "old"}, 404, "not on branch"),
        ({**python_start, "image": missing_image}, 404, "does not exist"),
        ({**python_start, "image": "elsewhere.example.org/any:1"}, 400, "not allowed"),
        ({**python_start, "serverOptions": {"gpu_request": 1}}, 422, "no GPUs"),
        ({**python_start, "cloudstorage": [{"bucket": "b"}]}, 422, "cloud storage"),
        ({**python_start, "serverOptions": {"tpu_request": 1}}, 400, "tpu_request"),
        ({**python_start, "commit_sha": "12"}, 400, "commit_sha"),
    ]
    for body, expected, words in refusals:
        status, answer = await call(gateway, "POST", "/servers", token, json=body)
        assert status == expected and words in answer["error"]["message"], (body, answer)
    status, listed = await call(gateway, "GET", "/servers", token)
    assert status == 200 and listed == {"servers": {}}

    # renku-ui 3.x starts it; its keys that mean nothing here are answered with warnings.
    ui_start = renku_clients.start_session_body("group", "analysis", sha, "main")
    status, server = await call(gateway, "POST", "/servers", token, json=ui_start)
    assert status == 201, server
    conforms(server, "server")
    name = server["name"]
    warnings = [w["message"] for w in server["status"]["warnings"]]
    assert any("storage" in w for w in warnings) and any("resource_class_id" in w for w in warnings)
    details = server["status"]["details"]
    assert [d["step"] for d in details][:2] == ["Cloning the repository", "Building the image"]
    assert server["status"]["totalNumContainers"] == len(details)

    # renku-python asks for the same commit by its short sha: the same server.
    status, again = await call(gateway, "POST", "/servers", token, json=python_start)
    assert status == 200 and again["name"] == name, again

    server = await until(gateway, name, token, "running")
    annotations = server["annotations"]
    assert {key: annotations[key] for key in renku_schemas.REQUIRED_ANNOTATIONS} == {
        "renku.io/namespace": "group",
        "renku.io/projectName": "analysis",
        "renku.io/branch": "main",
        "renku.io/commit-sha": sha,
        "renku.io/default_image_used": "False",
        "renku.io/repository": f"{gitlab_url}/Group/Analysis",
    }
    assert annotations["renku.io/gitlabProjectId"] == str(project.id)
    assert annotations["renku.io/username"] == "alice"
    assert all(d["status"] == "ready" for d in server["status"]["details"])
    assert server["status"]["readyNumContainers"] == server["status"]["totalNumContainers"]
    assert server["resources"]["requests"] == {"cpu": 1.0, "memory": "1G"}
    # What it uses: memory from one sample, processor use between two (one GET apart).
    assert server["resources"]["usage"]["memory"].endswith("G"), server["resources"]
    status, server = await call(gateway, "GET", f"/servers/{name}", token)
    usage = server["resources"]["usage"]
    assert set(usage) == {"cpu", "memory"} and 0 <= usage["cpu"] <= 2, usage

    # The image the gateway built holds the project's files: nobody starts from it, even
    # where ALLOWED_IMAGES' patterns would let them ($REGISTRY_HOST/*).
    built = server["image"]
    assert built.startswith(f"{stack.registry.host}/") and not await available(built)
    status, body = await call(gateway, "POST", "/servers", token, json={**ui_start, "image": built})
    assert status == 400 and "not allowed" in body["error"]["message"], body

    # renku-ui 2.10 renders the session row; renku-python's `session ls` reads the list.
    row = renku_clients.session_row(server)
    assert row.project == "group/analysis" and row.commit_title == sha[:8]
    assert row.commit_link == f"{gitlab_url}/Group/Analysis/tree/{sha}"
    status, listed = await call(gateway, "GET", "/servers", token, params={"project": "Analysis"})
    assert status == 200 and list(listed["servers"]) == [name]
    conforms(listed, "list")
    [session] = renku_clients.session_list(listed)
    assert (session.commit, session.branch, session.status) == (sha, "main", "running")
    assert session.start_time.tzinfo is not None

    # Logs: renku's default tail, and all of them for max_lines=0 (renku-ui's full log).
    status, full = await call(gateway, "GET", f"/logs/{name}", token, params={"max_lines": "0"})
    assert status == 200
    conforms(full, "logs")
    lines = full["jupyter-server"].splitlines()
    status, tail = await call(gateway, "GET", f"/logs/{name}", token, params={"max_lines": "2"})
    assert tail["jupyter-server"].splitlines() == lines[-2:] and len(lines) > 2, full
    status, body = await call(gateway, "GET", f"/logs/{name}", token, params={"max_lines": "-1"})
    assert status == 400, body

    # The admin sees the published notebook among the servers: no start time to tell.
    status, everything = await call(
        gateway, "GET", "/servers", gateway.settings.auth_token.get_secret_value()
    )
    conforms(everything, "list")
    published = [s for s in everything["servers"].values() if s["name"] != name]
    assert published and all(s["started"] is None for s in published), everything
    assert datetime.fromisoformat(everything["servers"][name]["started"])

    status, _ = await call(gateway, "DELETE", f"/servers/{name}", token)
    assert status == 204
    async with asyncio.timeout(60):
        while True:
            status, stopping = await call(gateway, "GET", f"/servers/{name}", token)
            if status == 404:
                break
            conforms(stopping, "server")
            await asyncio.sleep(0.5)


async def test_a_failed_start_tells_the_step_it_failed_at(
    make_gateway: MakeGateway, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    dana = lab.user("dana", "glpat-dana-renku-111111111")
    project = lab.project("group/broken", {dana: DEVELOPER})
    sha = project.remote.commit(
        {"a.ipynb": notebook("1"), "requirements.txt": b"no-such-package-ngw-renku==1\n"}
    )
    gateway = await make_gateway(GITLAB_URL=gitlab_url, SERVERS_API_PREFIX=API)
    body = {"namespace": "group", "project": "broken", "commit_sha": sha}
    status, server = await call(gateway, "POST", "/servers", dana.token, json=body)
    assert status == 201, server
    failed = await until(gateway, server["name"], dana.token, "failed")
    steps = {d["step"]: d["status"] for d in failed["status"]["details"]}
    assert steps["Cloning the repository"] == "ready"
    assert steps["Building the image"] == "failed", failed
    assert steps["Starting Jupyter"] == "waiting"
    assert failed["status"]["readyNumContainers"] == 1
    # The same API stays at its own paths too.
    response = await gateway.client.get(
        f"/servers/{server['name']}", headers={"Authorization": f"Bearer {dana.token}"}
    )
    assert response.status == 200
