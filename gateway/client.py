"""A client of a running gateway's API, for the command line: deploy a project and follow its
progress (server-sent events), list what runs, read a server's log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.errors import GatewayError

# A deploy may build for many minutes; only a silent connection (no keep-alive) is dead.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
CALL_TIMEOUT = aiohttp.ClientTimeout(total=60)


class ClientError(GatewayError):
    """The gateway refused."""


class Unreachable(ClientError):
    """The gateway could not be reached, or went away."""


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


class GatewayClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(
                method, self.url + path, headers=self.headers, timeout=CALL_TIMEOUT, **kwargs
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"cannot reach the gateway at {self.url}: {exc}") from None
        try:
            body = json.loads(text) if text else None
        except ValueError:
            raise ClientError(f"{self.url}{path} answered {response.status}, not JSON") from None
        if response.status >= 400:
            error = (body or {}).get("error") or {}
            raise ClientError(error.get("message") or f"{path} answered {response.status}")
        return body

    async def deploy(self, project: str) -> dict[str, Any]:
        """Queue an update of the project; the job, at once."""
        job: dict[str, Any] = await self.call(
            "POST", "/projects?wait=false", json={"project": project, "action": "update"}
        )
        return job

    async def events(self, job_id: str) -> AsyncIterator[Event]:
        """The job's events until the final one (included)."""
        headers = {**self.headers, "Accept": "text/event-stream"}
        try:
            async with self.session.get(
                f"{self.url}/jobs/{job_id}/events", headers=headers, timeout=STREAM_TIMEOUT
            ) as response:
                if response.status != 200:
                    raise ClientError(f"the job's events answered {response.status}")
                async for event in parse_events(response.content):
                    yield event
                    if event.data.get("final"):
                        return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"lost the gateway at {self.url}: {exc}") from None
        raise ClientError("the gateway ended the stream before the job finished")


async def parse_events(lines: AsyncIterable[bytes]) -> AsyncIterator[Event]:
    """Server-sent events from a stream of lines; comments (keep-alives) are skipped."""
    name, data = "message", list[str]()
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield Event(name, json.loads("\n".join(data)))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
