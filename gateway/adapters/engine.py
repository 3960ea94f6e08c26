"""Talking to the Docker engine at all, for the image adapter and the runtimes alike: a call
whose connection fails is a DockerError, and a log's text is its lines."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import aiohttp

from gateway.errors import DockerError

P = ParamSpec("P")
T = TypeVar("T")


def engine_call(
    what: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Connection failures (the engine stopped or restarted) become a DockerError, so the job
    fails cleanly with docker_error; aiodocker only wraps errors the engine itself reports."""

    def wrap(call: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(call)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await call(*args, **kwargs)
            except (aiohttp.ClientError, OSError) as exc:
                raise DockerError(
                    f"the Docker engine stopped answering while {what}: {exc}"
                ) from None

        return guarded

    return wrap


def log_lines(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()]
