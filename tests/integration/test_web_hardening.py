"""The gateway's own HTTP edges under attack: guessed tokens, half-sent requests, hostile JSON,
forged return addresses and logins, stolen admin cookies. Each answer is the right 4xx, never
a 500, and nothing is changed or handed out."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from gateway.records import ServerRecord, ServerState
from gateway.sessions import SESSION_COOKIE
from gateway.web.keys import SIGNER, STORE
from tests.conftest import Gateway, MakeGateway, Stack, gateway_env, new_instance
from tests.support.engine import remove_instance
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, notebook
from tests.support.process import GatewayProcess
from tests.support.stack import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

TOO_DEEP = "[" * 30_000 + "]" * 30_000  # within the 64 KiB a notification may have


async def test_failed_credential_checks_are_limited_per_client(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway(GITLAB_URL=gitlab_url, AUTH_FAILURE_LIMIT="5")
    asked = [r for r in lab.requests if r == "GET /api/v4/user"]
    statuses = []
    for attempt in range(5):
        response = await gateway.client.get(
            "/servers", headers={"Authorization": f"Bearer glpat-guess-{attempt:04d}"}
        )
        statuses.append(response.status)
    assert statuses == [401] * 5
    assert len([r for r in lab.requests if r == "GET /api/v4/user"]) == len(asked) + 5
    # Past the limit: refused before the token is looked at, and GitLab is not asked.
    for headers in (
        {"Authorization": "Bearer glpat-guess-0005"},
        {"Authorization": "Bearer not-the-admin-token"},
    ):
        response = await gateway.client.get("/servers", headers=headers)
        assert response.status == 429, await response.text()
        assert (await response.json())["error"]["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
    response = await gateway.client.get("/jobs", headers={"Authorization": "Bearer wrong"})
    assert response.status == 429
    assert len([r for r in lab.requests if r == "GET /api/v4/user"]) == len(asked) + 5


async def test_bodies_that_are_not_json_of_the_right_shape_are_a_400(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-" + secrets.token_hex(8))
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway(GITLAB_URL=gitlab_url, WEBHOOK_SECRET="hook-secret")
    nested_object = '{"project": ' * 40 + '"x"' + "}" * 40
    for path, headers in (
        ("/projects", gateway.auth()),
        ("/servers", gateway.auth(alice.token)),
        ("/hooks/gitlab", {"X-Gitlab-Token": "hook-secret", "X-Gitlab-Event": "Push Hook"}),
    ):
        for body in (TOO_DEEP, nested_object):
            response = await gateway.client.post(
                path, data=body, headers={**headers, "Content-Type": "application/json"}
            )
            answer = await response.json()
            assert response.status == 400, (path, answer)
            assert "nested more than" in answer["error"]["message"], answer
    response = await gateway.client.get("/jobs", headers=gateway.auth())
    assert (await response.json())["jobs"] == []


async def test_only_the_gateways_own_notebook_addresses_are_returned_to(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway()
    domain, port = gateway.settings.base_domain, stack.traefik.web_port
    good = f"http://a--b.{domain}:{port}/lab"
    bad = [
        f"http://a--b.{domain}:{port}\\@evil.example/",
        f"http://a--b.{domain}\\.evil.example:{port}/",
        f"http://a--b.{domain}:{port + 1}/",
        f"http://a--b.{domain}/",
        f"https://a--b.{domain}:{port}/",
        f"http://someone@a--b.{domain}:{port}/",
        f"http://x.a--b.{domain}:{port}/",
        f"http://{domain}:{port}/",
        f"http://a--b.{domain}:99999/",
        f"http://a--b.{domain}:{port}/ /",
        "http://[::1/",
        "javascript:alert(1)//a--b." + domain,
        "//a--b." + domain,
        "",
    ]
    response = await gateway.client.get(f"/auth/login?next={quote(good)}")
    assert response.status == 200
    for target in bad:
        response = await gateway.client.get(f"/auth/login?next={quote(target)}")
        assert response.status == 400, (target, response.status)
        response = await gateway.client.post("/auth/login", data={"token": "t", "next": target})
        assert response.status == 400, (target, response.status, await response.text())


async def test_logins_from_other_pages_are_refused(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway()
    token = gateway.settings.auth_token.get_secret_value()
    next_url = f"http://a--b.{gateway.settings.base_domain}:{stack.traefik.web_port}/"
    own = f"http://127.0.0.1:{gateway.settings.gateway_port}"
    for path, form in (
        ("/login", {"token": token}),
        ("/auth/login", {"token": token, "next": next_url}),
    ):
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
        ):
            response = await gateway.client.post(
                path, data=form, headers=headers, allow_redirects=False
            )
            assert response.status == 403, (path, headers, await response.text())
            assert "Set-Cookie" not in response.headers
        response = await gateway.client.post(
            path, data=form, headers={"Origin": own}, allow_redirects=False
        )
        assert response.status in (303, 404), (path, await response.text())  # no such host: 404


async def test_the_notebook_cookie_is_secure_as_public_scheme_says(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"README.md": b"nothing to publish\n"})
    for scheme, forwarded, secure in (("https", "http", True), ("http", "https", False)):
        gateway = await make_gateway(PUBLIC_SCHEME=scheme)
        name = "alice-analysis-1"
        host = f"{name}.{gateway.settings.base_domain}"
        await add_server(gateway, name, user_id=7)
        ticket = gateway.client.app[SIGNER].ticket({"u": 7, "admin": False, "h": host, "next": "/"})
        key = gateway.settings.forward_auth_key()
        response = await gateway.client.get(
            f"/auth/forward?key={key}",
            headers={
                "X-Forwarded-Host": host,
                "X-Forwarded-Uri": f"/_gateway/login?ticket={quote(ticket)}",
                "X-Forwarded-Proto": forwarded,
            },
            allow_redirects=False,
        )
        assert response.status == 302, await response.text()
        cookie = response.cookies[SESSION_COOKIE]
        assert bool(cookie["secure"]) is secure
        port = f":{gateway.settings.public_port}"
        assert response.headers["Location"] == f"{scheme}://{host}{port}/"
        # Nobody but Traefik may ask the guard.
        response = await gateway.client.get(
            "/auth/forward", headers={"X-Forwarded-Host": host}, allow_redirects=False
        )
        assert response.status == 403


async def test_logging_out_takes_the_session_back_for_good(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway()
    token = gateway.settings.auth_token.get_secret_value()
    response = await gateway.client.post("/login", data={"token": token}, allow_redirects=False)
    assert response.status == 303
    cookie = {
        "Cookie": f"notebook_gateway_admin={response.cookies['notebook_gateway_admin'].value}"
    }
    assert (await gateway.client.get("/jobs", headers=cookie)).status == 200
    # Another site's form can send the cookie, but not the page's header.
    response = await gateway.client.post("/logout", headers=cookie)
    assert response.status == 403
    assert (await gateway.client.get("/jobs", headers=cookie)).status == 200
    csrf = {**cookie, "X-Requested-With": "notebook-gateway"}
    response = await gateway.client.post("/logout", headers=csrf)
    assert response.status == 204
    # A copy of the cookie (another tab, a stolen one) no longer works, even after a restart.
    assert (await gateway.client.get("/jobs", headers=cookie)).status == 401
    again = await make_gateway(
        GATEWAY_INSTANCE=gateway.instance,
        BASE_DOMAIN=gateway.settings.base_domain,
        STATE_DIR=str(gateway.settings.state_dir),
        AUTH_TOKEN=token,
    )
    assert (await again.client.get("/jobs", headers=cookie)).status == 401
    assert (await again.client.get("/jobs", headers=again.auth())).status == 200


async def test_half_sent_requests_are_cut_off(
    stack: Stack, remote: GitRemote, tmp_path: Path
) -> None:
    """Against `notebook-gateway serve` itself: a connection that never finishes its headers,
    or its body, is closed after HTTP_TIMEOUT."""
    remote.commit({"README.md": b"nothing to publish\n"})
    instance = new_instance(stack)
    port = free_port()
    env = gateway_env(
        stack, remote, tmp_path / "state", instance,
        GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port), HTTP_TIMEOUT="2",
    )  # fmt: skip
    process = GatewayProcess(env, tmp_path / "gateway.log")
    process.start()
    try:
        await process.healthy(60)

        def cut_off_after(request: bytes) -> tuple[float, bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                conn.sendall(request)
                started, answer = time.monotonic(), b""
                while chunk := conn.recv(4096):
                    answer += chunk
                return time.monotonic() - started, answer

        seconds, answer = await asyncio.to_thread(
            cut_off_after, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "
        )
        assert seconds < 10 and answer == b"", (seconds, answer)
        auth = f"Authorization: Bearer {env['AUTH_TOKEN']}\r\n".encode()
        seconds, answer = await asyncio.to_thread(
            cut_off_after,
            b"POST /projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + auth
            + b'Content-Length: 100\r\n\r\n{"project": ',
        )
        assert seconds < 10 and answer.startswith(b"HTTP/1.1 408"), (seconds, answer[:200])
        async with aiohttp.ClientSession() as http, http.get(f"{process.url}/health") as response:
            assert response.status == 200  # still serving everyone else
    finally:
        process.stop()
        remove_instance(instance)


async def add_server(gateway: Gateway, name: str, user_id: int) -> None:
    now = datetime.now(UTC).isoformat()
    await gateway.client.app[STORE].add_server(
        ServerRecord(
            name=name, user_id=user_id, username="alice", namespace="group",
            project="analysis", branch="main", commit_sha="a" * 40, notebook="",
            image="", options={"cpu_request": 1.0, "mem_request": "1G", "defaultUrl": "/lab"},
            state=ServerState.RUNNING, message="",
            url=f"http://{name}.{gateway.settings.base_domain}/", created_at=now, updated_at=now,
        )
    )  # fmt: skip


async def test_a_user_cannot_take_more_servers_than_allowed_by_asking_at_once(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str]
) -> None:
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-" + secrets.token_hex(8))
    project = lab.project("group/analysis", {alice: DEVELOPER})
    commits = [project.remote.commit({"a.ipynb": notebook(f"print({n})")}) for n in range(6)]
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway(GITLAB_URL=gitlab_url, MAX_SERVERS_PER_USER="2")
    # GitLab's answers about the token are cached first, so nothing holds the requests apart.
    await gateway.client.get("/servers", headers=gateway.auth(alice.token))

    async def start(sha: str) -> int:
        response = await gateway.client.post(
            "/servers",
            json={"namespace": "group", "project": "analysis", "commit_sha": sha},
            headers=gateway.auth(alice.token),
        )
        return response.status

    statuses = await asyncio.gather(*map(start, commits))
    assert sorted(statuses) == [201, 201, 403, 403, 403, 403], statuses
    response = await gateway.client.get("/servers", headers=gateway.auth(alice.token))
    assert len((await response.json())["servers"]) == 2
    # Asking for the same one twice at once starts it once.
    for name in list((await response.json())["servers"]):
        response = await gateway.client.delete(
            f"/servers/{name}?forced=true", headers=gateway.auth(alice.token)
        )
        assert response.status == 204
    async with asyncio.timeout(60):
        while True:
            response = await gateway.client.get("/servers", headers=gateway.auth(alice.token))
            if not (await response.json())["servers"]:
                break
            await asyncio.sleep(0.5)
    statuses = await asyncio.gather(*(start(commits[0]) for _ in range(4)))
    assert sorted(statuses) == [200, 200, 200, 201], statuses
