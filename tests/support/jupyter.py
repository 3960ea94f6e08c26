"""Talk to a published notebook the way a browser does: through Traefik, by host name."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class LocalhostResolver(AbstractResolver):
    """*.localhost is loopback (RFC 6761), as curl and browsers treat it."""

    def __init__(self) -> None:
        self._default = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host == "localhost" or host.endswith(".localhost"):
            return [
                ResolveResult(
                    hostname=host,
                    host="127.0.0.1",
                    port=port,
                    family=socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        return await self._default.resolve(host, port, family)

    async def close(self) -> None:
        await self._default.close()


def session(
    *, browser: bool = False, headers: dict[str, str] | None = None
) -> aiohttp.ClientSession:
    """A client that finds *.localhost. A browser keeps cookies (a notebook host's login);
    otherwise execute() passes Jupyter's _xsrf cookie itself. `headers` go with every
    request (a user's token for a guarded server)."""
    jar: aiohttp.abc.AbstractCookieJar = (
        aiohttp.CookieJar() if browser else aiohttp.DummyCookieJar()
    )
    sent = {"Accept": "text/html,application/json;q=0.9"} if browser else {}
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=LocalhostResolver()),
        cookie_jar=jar,
        headers={**sent, **(headers or {})},
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def execute(
    http: aiohttp.ClientSession, base_url: str, code: str, timeout: float = 60
) -> str:
    """Start a kernel, run `code` over the kernel websocket, return its output, stop the kernel."""
    base = base_url.rstrip("/")
    # Jupyter protects POSTs with an _xsrf cookie, set on its pages.
    async with http.get(f"{base}/lab") as page:
        assert page.status == 200, f"GET /lab answered {page.status}"
        cookie = page.cookies.get("_xsrf") or http.cookie_jar.filter_cookies(page.url).get("_xsrf")
        assert cookie is not None, "Jupyter set no _xsrf cookie"
        xsrf = cookie.value
    headers = {"X-XSRFToken": xsrf, "Cookie": f"_xsrf={xsrf}"}
    kernel = {"name": "python3"}
    async with http.post(f"{base}/api/kernels", json=kernel, headers=headers) as response:
        assert response.status == 201, await response.text()
        kernel_id = (await response.json())["id"]
    try:
        ws_url = f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels"
        async with http.ws_connect(ws_url, headers={"Cookie": f"_xsrf={xsrf}"}) as ws:
            msg_id = uuid.uuid4().hex
            await ws.send_json(_execute_request(msg_id, code))
            return await asyncio.wait_for(_collect_output(ws, msg_id), timeout)
    finally:
        async with http.delete(f"{base}/api/kernels/{kernel_id}", headers=headers):
            pass


def _execute_request(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "username": "test",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
            "date": datetime.now(UTC).isoformat(),
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


async def run_hostile(
    http: aiohttp.ClientSession, base_url: str, code: str, timeout: float = 90
) -> str:
    """Run code that may get its kernel killed (out of memory): returns its output, or
    "<kernel died>" when the kernel went away before finishing."""
    try:
        return await execute(http, base_url, code, timeout)
    except (AssertionError, aiohttp.ClientError, TimeoutError, KernelDied):
        return "<kernel died>"


class KernelDied(Exception):
    pass


async def _collect_output(ws: aiohttp.ClientWebSocketResponse, msg_id: str) -> str:
    output: list[str] = []
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        data = message.json()
        kind, content = data.get("msg_type"), data.get("content") or {}
        # The server announces a killed kernel on its own, outside any request.
        if kind == "status" and content.get("execution_state") in ("dead", "restarting"):
            raise KernelDied(content["execution_state"])
        if data.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if kind == "stream":
            output.append(content["text"])
        elif kind == "execute_result":
            output.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            raise AssertionError(f"the cell raised {content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            break
    return "".join(output)
