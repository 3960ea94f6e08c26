"""Process log lines: masked, tagged with the request or job they belong to, text or JSON."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway import logs
from gateway.redact import MASK, Redactor


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What the root logger writes, as configure_logging sets it up; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield io.StringIO()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def configure(stream: io.StringIO, fmt: str) -> None:
    logs.configure_logging("INFO", Redactor(["s3cret-value"]), fmt)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def test_json_lines_carry_ids_and_no_secret(captured: io.StringIO) -> None:
    stream = captured
    configure(stream, "json")
    log = logging.getLogger("gateway.test")

    async def in_a_request() -> None:
        logs.request_id.set("req-1")
        log.info("asked with %s", "s3cret-value")

    async def in_a_job() -> None:
        logs.job_id.set("job-1")
        try:
            raise RuntimeError("s3cret-value leaked")
        except RuntimeError:
            log.exception("failed")

    async def both() -> None:
        await asyncio.create_task(in_a_request())
        await asyncio.create_task(in_a_job())
        log.warning("outside")

    asyncio.run(both())
    request, job, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert request["request_id"] == "req-1" and request["job_id"] is None
    assert request["message"] == f"asked with {MASK}" and request["logger"] == "gateway.test"
    assert job["job_id"] == "job-1" and job["request_id"] is None  # tasks do not share ids
    assert "RuntimeError" in job["exception"] and "s3cret-value" not in job["exception"]
    assert outside["request_id"] is None and outside["level"] == "WARNING"


def test_text_lines_show_the_ids(captured: io.StringIO) -> None:
    stream = captured
    configure(stream, "text")

    async def job() -> None:
        logs.job_id.set("abc123")
        logging.getLogger("gateway.x").info("building")

    asyncio.run(job())
    assert stream.getvalue().rstrip().endswith("INFO gateway.x [job=abc123]: building")
