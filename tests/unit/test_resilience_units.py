"""Retries, their classification, the rate limiter and notebook validation."""

import json

import pytest

from gateway.adapters.registry import is_transient
from gateway.publish.discovery import notebook_problem
from gateway.ratelimit import RateLimiter
from gateway.retry import with_retries


async def test_retries_back_off_with_jitter_and_give_up() -> None:
    waits: list[float] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError("registry answered 503")

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    with pytest.raises(ConnectionError):
        await with_retries(
            flaky, attempts=4, delay=1.0, transient=lambda e: True,
            on_retry=lambda *_: None, jitter=lambda: 0.5, sleep=no_sleep,
        )  # fmt: skip
    assert calls == 4
    assert waits == [1.0, 2.0, 4.0]  # jitter 0.5 -> factor 1.0


async def test_retries_stop_at_the_first_success_and_never_retry_permanent_errors() -> None:
    attempts: list[int] = []

    async def second_time_lucky() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("refused")
        return "ok"

    async def no_sleep(seconds: float) -> None:
        pass

    assert (
        await with_retries(
            second_time_lucky,
            attempts=5,
            delay=1,
            transient=lambda e: True,
            on_retry=lambda *_: None,
            sleep=no_sleep,
        )
        == "ok"
    )
    assert len(attempts) == 2

    async def refused() -> str:
        attempts.append(1)
        raise PermissionError("unauthorized")

    attempts.clear()
    with pytest.raises(PermissionError):
        await with_retries(
            refused,
            attempts=5,
            delay=1,
            transient=lambda e: False,
            on_retry=lambda *_: None,
            sleep=no_sleep,
        )
    assert len(attempts) == 1


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        (
            'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused',
            True,
        ),
        ("received unexpected HTTP status: 503 Service Unavailable", True),
        ("net/http: request canceled (Client.Timeout exceeded while awaiting headers)", True),
        ('Get "http://127.0.0.1:5000/v2/": unauthorized: authentication required', False),
        ("denied: requested access to the resource is denied", False),
        ("incorrect username or password", False),
    ],
)
def test_registry_errors_are_classified(message: str, transient: bool) -> None:
    assert is_transient(message) is transient


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=3, clock=lambda: now[0])
    assert [limiter.wait_time("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.wait_time("a") == pytest.approx(20.0)  # one token per 20 s
    assert limiter.wait_time("b") == 0  # clients are counted apart
    now[0] = 20.0
    assert limiter.wait_time("a") == 0


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {}}).encode(),
            None,
        ),
        (json.dumps({"nbformat": 3, "worksheets": []}).encode(), None),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (json.dumps([1, 2]).encode(), "no nbformat"),
        (json.dumps({"nbformat": 4}).encode(), "no cells"),
    ],
)
def test_notebook_problem(data: bytes, problem: str | None) -> None:
    found = notebook_problem(data)
    assert found is None if problem is None else problem in (found or "")
