"""Bad requests get the right status and a clear message in one envelope, and change nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MakeGateway
from tests.support.engine import owned_containers, owned_images
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

AUTHORIZED = object()  # replaced by the gateway's real header

CASES = [
    # (method, path, body, headers, status, code, words in the message)
    ("POST", "/projects", b"{not json", AUTHORIZED, 400, "bad_request", "not valid JSON"),
    ("POST", "/projects", b"", AUTHORIZED, 400, "bad_request", "empty"),
    ("POST", "/projects", b"[]", AUTHORIZED, 400, "bad_request", "JSON object"),
    ("POST", "/projects", b"{}", AUTHORIZED, 400, "bad_request", "project: is required"),
    ("POST", "/projects", b'{"project": "climate"}', AUTHORIZED, 400, "bad_request", "action: is required"),
    ("POST", "/projects", b'{"project": "climate", "action": "rebuild"}', AUTHORIZED, 400, "bad_request", "must be 'update'"),
    ("POST", "/projects", b'{"project": 5, "action": "update"}', AUTHORIZED, 400, "bad_request", "project"),
    ("POST", "/projects", b'{"project": "../x", "action": "update"}', AUTHORIZED, 400, "bad_request", "plain folder name"),
    ("POST", "/projects", b'{"project": "a/b", "action": "update"}', AUTHORIZED, 400, "bad_request", "plain folder name"),
    ("POST", "/projects", b'{"project": "..", "action": "update"}', AUTHORIZED, 400, "bad_request", "plain folder name"),
    ("POST", "/projects", b'{"project": "", "action": "update"}', AUTHORIZED, 400, "bad_request", "empty"),
    ("POST", "/projects", b'{"project": ".git", "action": "update"}', AUTHORIZED, 400, "bad_request", "hidden"),
    ("POST", "/projects", b'{"project": "a\\nb", "action": "update"}', AUTHORIZED, 400, "bad_request", "control"),
    ("POST", "/projects", b'{"project": "nope", "action": "update"}', AUTHORIZED, 404, "unknown_project", "no project 'nope'"),
    ("POST", "/projects?wait=maybe", b'{"project": "climate", "action": "update"}', AUTHORIZED, 400, "bad_request", "wait"),
    ("DELETE", "/projects", b'{"project": "nope"}', AUTHORIZED, 404, "unknown_project", "nope"),
    ("DELETE", "/projects", b'{"project": "../climate"}', AUTHORIZED, 400, "bad_request", "plain folder name"),
    ("POST", "/projects", b'{"project": "climate", "action": "update"}', {}, 401, "unauthorized", "missing Authorization"),
    ("POST", "/projects", b'{"project": "climate", "action": "update"}', {"Authorization": "Bearer wrong"}, 401, "unauthorized", "invalid token"),
    ("POST", "/projects", b'{"project": "climate", "action": "update"}', {"Authorization": "Basic Zm9vOmJhcg=="}, 401, "unauthorized", "Bearer"),
    ("DELETE", "/projects", b'{"project": "climate"}', {"Authorization": "Bearer wrong"}, 401, "unauthorized", "invalid token"),
    ("GET", "/jobs/does-not-exist", b"", AUTHORIZED, 404, "not_found", "no job"),
    ("GET", "/jobs/does-not-exist", b"", {}, 401, "unauthorized", "missing"),
    ("PUT", "/projects", b"{}", AUTHORIZED, 405, "method_not_allowed", "Not Allowed"),
    ("GET", "/nowhere", b"", {}, 404, "not_found", "Not Found"),
    ("GET", "/auth/login?next=https://evil.example.com/", b"", {}, 400, "bad_request", "not a notebook of this gateway"),
    ("POST", "/servers", b'{"namespace": "g"}', {}, 401, "unauthorized", "missing credentials"),
    ("GET", "/servers", b"", {"Authorization": "Bearer not-a-token"}, 401, "unauthorized", "invalid token"),
    ("POST", "/projects", b'{"project": "' + b"x" * 100_000 + b'", "action": "update"}', AUTHORIZED, 413, "request_too_large", "limit"),
]  # fmt: skip


async def test_bad_requests_are_refused_and_change_nothing(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    head = remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway()
    token = gateway.settings.auth_token.get_secret_value()
    for method, path, body, headers, status, code, words in CASES:
        sent = gateway.auth() if headers is AUTHORIZED else dict(headers)  # type: ignore[call-overload]
        sent["Content-Type"] = "application/json"
        response = await gateway.client.request(method, path, data=body, headers=sent)
        text = await response.text()
        case = f"{method} {path} {body[:60]!r} -> {response.status} {text[:300]}"
        assert response.status == status, case
        assert response.content_type == "application/json", case
        error = json.loads(text)["error"]
        assert set(error) == {"code", "message", "detail"}, case
        assert error["code"] == code, case
        assert words in error["message"], case
        assert token not in text, case
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert owned_containers(gateway.instance) == []
    assert owned_images(gateway.instance) == []
    assert remote.head() == head, "a refused request must not commit"


async def test_unknown_project_lists_the_projects_that_exist(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit(
        {"climate/a.ipynb": notebook("1"), "genomics/b.ipynb": notebook("2"), "README.md": b"x"}
    )
    gateway = await make_gateway()
    status, body = await gateway.notify("README.md")
    assert status == 404
    assert body["error"]["detail"]["projects"] == ["climate", "genomics"]
    assert body["error"]["detail"]["job"]["state"] == "failed"
