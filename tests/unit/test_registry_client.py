"""The registry client's side of the token handshake that GitLab's container registry uses
(401 + WWW-Authenticate: Bearer realm=... -> token service -> retry). The Basic-auth path is
exercised against the real Distribution registry in the integration tests."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.adapters.registry import RegistryAuth, RegistryClient, speaks_plain_http
from gateway.errors import RegistryError

TOKEN = "issued-token"
Server = Callable[..., Awaitable[TestServer]]


def token_registry(tags: list[str], allow_delete: bool = True) -> tuple[web.Application, list[str]]:
    seen: list[str] = []

    def challenge(request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") == f"Bearer {TOKEN}":
            return None
        realm = f"http://{request.host}/jwt/auth"
        return web.Response(
            status=401,
            headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="container_registry"'},
        )

    async def token(request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(b"ci:pw").decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401)
        seen.append(f"scope={request.query.get('scope', '')}")
        return web.json_response({"token": TOKEN})

    async def tag_list(request: web.Request) -> web.Response:
        return challenge(request) or web.json_response({"name": "x", "tags": tags})

    async def manifest(request: web.Request) -> web.Response:
        if denied := challenge(request):
            return denied
        reference = request.match_info["reference"]
        if request.method == "DELETE":
            seen.append(f"delete {reference}")
            return web.Response(status=202 if allow_delete else 405)
        return web.Response(headers={"Docker-Content-Digest": f"sha256:{reference}"})

    app = web.Application()
    app.router.add_get("/jwt/auth", token)
    app.router.add_get("/v2/{repo:.+}/tags/list", tag_list)
    app.router.add_route("*", "/v2/{repo:.+}/manifests/{reference}", manifest)
    return app, seen


async def client_for(aiohttp_server: Server, app: web.Application, session: Any) -> RegistryClient:
    server = await aiohttp_server(app, host="127.0.0.1")
    address = f"127.0.0.1:{server.port}"
    return RegistryClient(session, address, RegistryAuth(address, "ci", "pw"))


async def test_prune_follows_the_token_handshake(aiohttp_server: Server) -> None:
    app, seen = token_registry(["old", "current"])
    async with aiohttp.ClientSession() as session:
        registry = await client_for(aiohttp_server, app, session)
        assert await registry.prune("team/nbgw/climate/intro", keep="current") == ["old"]
    assert "scope=repository:team/nbgw/climate/intro:pull,push,delete" in seen
    assert "delete sha256:old" in seen and "delete sha256:current" not in seen


async def test_a_registry_that_forbids_deleting_says_how_to_allow_it(
    aiohttp_server: Server,
) -> None:
    app, _ = token_registry(["old"], allow_delete=False)
    async with aiohttp.ClientSession() as session:
        registry = await client_for(aiohttp_server, app, session)
        with pytest.raises(RegistryError, match="REGISTRY_STORAGE_DELETE_ENABLED"):
            await registry.prune("x")


async def test_wrong_credentials_are_a_clear_error(aiohttp_server: Server) -> None:
    app, _ = token_registry(["old"])
    async with aiohttp.ClientSession() as session:
        server = await aiohttp_server(app, host="127.0.0.1")
        address = f"127.0.0.1:{server.port}"
        registry = RegistryClient(session, address, RegistryAuth(address, "ci", "wrong"))
        with pytest.raises(RegistryError, match="refused the credentials"):
            await registry.prune("x")


async def test_the_api_can_be_reached_elsewhere_than_the_engine_pushes(
    aiohttp_server: Server,
) -> None:
    """docker-compose: the engine pushes to 127.0.0.1:5000, the gateway's container asks
    http://registry:5000 (here: another port of loopback)."""
    app, _ = token_registry(["old", "current"])
    app.router.add_get("/v2/", token_registry_ping)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        auth = RegistryAuth("127.0.0.1:5000", "ci", "pw")
        registry = RegistryClient(
            session, "127.0.0.1:5000", auth, f"http://127.0.0.1:{server.port}"
        )
        assert await registry.has("127.0.0.1:5000/team/climate/intro:current")
        assert "accepts the credentials" in await registry.ping()


async def token_registry_ping(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") == f"Bearer {TOKEN}":
        return web.json_response({})
    realm = f"http://{request.host}/jwt/auth"
    return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})


# RegistryConfig as `GET /info` returns it (Docker Engine 20.10, API 1.41) for an engine
# started with insecure-registries 10.77.0.0/24 and registry.lan:5000.
ENGINE_REGISTRY_CONFIG = {
    "InsecureRegistryCIDRs": ["10.77.0.0/24", "127.0.0.0/8"],
    "IndexConfigs": {
        "docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True},
        "registry.lan:5000": {
            "Name": "registry.lan:5000", "Mirrors": [], "Secure": False, "Official": False,
        },
    },
}  # fmt: skip


@pytest.mark.parametrize(
    ("server", "addresses", "plain"),
    [
        ("10.77.0.1:5000", ["10.77.0.1"], True),  # in a listed range
        ("127.0.0.1:5000", ["127.0.0.1"], True),  # loopback, the engine's default
        ("registry.lan:5000", ["192.0.2.7"], True),  # listed by name
        ("nodes.example:5000", ["10.77.0.9"], True),  # a name whose address is in a range
        ("10.78.0.1:5000", ["10.78.0.1"], False),
        ("registry.example.org", ["203.0.113.5", "2001:db8::5"], False),
        ("docker.io", [], False),
    ],
)
def test_the_gateway_reads_a_registry_without_tls_where_its_engine_does(
    server: str, addresses: list[str], plain: bool
) -> None:
    assert speaks_plain_http(ENGINE_REGISTRY_CONFIG, server, addresses) is plain
