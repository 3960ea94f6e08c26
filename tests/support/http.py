"""Waiting on HTTP answers, for tests and the benchmark alike: whether a URL answers (through
Traefik, by Host), until it does, and polling any read until it says done."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")


async def answers(
    http: aiohttp.ClientSession,
    url: str,
    *,
    host: str | None = None,
    contains: str = "",
    authorization: str = "",
) -> bool:
    """200 from `url` (with `contains` in the body), sent with `host` as the Host header."""
    headers = {"Host": host} if host else {}
    if authorization:
        headers["Authorization"] = authorization
    try:
        async with http.get(url, headers=headers) as response:
            if response.status != 200:
                return False
            return contains in await response.text() if contains else True
    except (aiohttp.ClientError, TimeoutError):
        return False


async def until_answers(
    http: aiohttp.ClientSession,
    url: str,
    *,
    host: str | None = None,
    contains: str = "",
    authorization: str = "",
    timeout: float = 600,
    every: float = 0.2,
) -> None:
    """Ask every `every` seconds until `url` answers (see answers); fail after `timeout`."""

    async def ask() -> bool:
        return await answers(http, url, host=host, contains=contains, authorization=authorization)

    await until(ask, bool, timeout, every)


def job_finished(job: dict[str, Any]) -> bool:
    """A job as GET /jobs/{id} answers it, once it will not change any more."""
    return job["state"] in ("succeeded", "failed", "coalesced")


async def until(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float, every: float
) -> T:
    """Read every `every` seconds until `done` says so; the last read. Fails after
    `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            value = await read()
            if done(value):
                return value
            await asyncio.sleep(every)
