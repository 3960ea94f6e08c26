"""GET /jobs/{id}/events: a job's progress as server-sent events, as BinderHub streams builds.

Every line of the job's log is an event named by its phase (waiting, fetching, building,
pushing, starting, ready, removing, publishing, failed, done), build and push output included.
A job folded into a later one goes on with that one's events. The stream ends with one event
whose data has `"final": true`: `end` with the finished job, or `failed` when the stream itself
cannot go on (no such job, not allowed, the gateway shutting down). EventSource cannot read a
status code, so a browser (Accept: text/event-stream) gets those errors as that event; other
clients get the usual error envelope and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web
from pydantic import BaseModel

from gateway.errors import GatewayError, NotFound, Unavailable
from gateway.records import JobState, LogLine
from gateway.schemas import JobEnd, JobLine, JobWaiting, StreamFailure
from gateway.web import views
from gateway.web.auth import require_admin
from gateway.web.handlers import job_view
from gateway.web.keys import RUNNER, STORE

KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies from hanging up


async def job_events(request: web.Request) -> web.StreamResponse:
    try:
        require_admin(request)
        job_id, after = _start(request)
        if await request.app[STORE].get_job(job_id) is None:
            raise NotFound(f"there is no job {request.match_info['id']!r}")
    except GatewayError as exc:
        if "text/event-stream" not in request.headers.get("Accept", ""):
            raise
        stream = await _open(request)
        await _send_failure(stream, exc)
        return stream
    stream = await _open(request)
    with contextlib.suppress(ConnectionResetError):  # the client left; the job goes on
        await _follow(request, stream, job_id, after)
    return stream


async def _follow(
    request: web.Request, stream: web.StreamResponse, job_id: str, after: int
) -> None:
    store, feeds = request.app[STORE], request.app[RUNNER].feeds
    while True:
        queue, unwritten = feeds.follow(job_id)
        try:
            job = await store.get_job(job_id)
            if job is None:
                break
            for line in await store.job_log(job_id, after=after):
                after = await _send_line(stream, job_id, line)
            for line in unwritten:
                if line.seq is not None and line.seq > after:
                    after = await _send_line(stream, job_id, line)
            while not job.finished:
                try:
                    async with asyncio.timeout(KEEPALIVE):  # wait_for can lose a cancellation
                        item = await queue.get()
                except TimeoutError:
                    await stream.write(b": keep-alive\n\n")
                    continue
                if item is None:  # the record is final, or the gateway is shutting down
                    break
                if item.seq is not None and item.seq > after:
                    after = await _send_line(stream, job_id, item)
        finally:
            feeds.unfollow(job_id, queue)
        job = await store.get_job(job_id)
        if job is None:  # a periodic check that found nothing to do leaves no record
            await _send_failure(stream, NotFound(f"job {job_id} is gone: it found nothing to do"))
            return
        if job.state is JobState.COALESCED and job.covered_by:
            message = f"folded into job {job.covered_by}, which does the work"
            await _send(stream, "waiting", JobWaiting(job=job_id, message=message, final=False))
            job_id, after = job.covered_by, 0
            continue
        if not job.finished:
            await _send_failure(
                stream,
                Unavailable("the gateway is shutting down; the job resumes when it starts again"),
            )
            return
        await _send(stream, "end", JobEnd(job=await job_view(request, job), final=True))
        return


def _start(request: web.Request) -> tuple[str, int]:
    """The job to follow and the last line already seen: a reconnecting EventSource sends the
    last event's id ('<job>:<seq>') back as Last-Event-ID."""
    job_id, after = request.match_info["id"], 0
    last = request.headers.get("Last-Event-ID", "")
    seen_job, _, seq = last.partition(":")
    if seen_job and seq.isdigit():
        job_id, after = seen_job, int(seq)
    return job_id, after


async def _open(request: web.Request) -> web.StreamResponse:
    stream = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx and the like would hold events back
        }
    )
    await stream.prepare(request)
    return stream


async def _send_line(stream: web.StreamResponse, job_id: str, line: LogLine) -> int:
    entry = views.log_entry(line)
    event = JobLine(job=job_id, final=False, **dict(entry))
    await _send(stream, entry.phase, event, f"{job_id}:{entry.seq}")
    return entry.seq


async def _send_failure(stream: web.StreamResponse, exc: GatewayError) -> None:
    await _send(
        stream,
        "failed",
        StreamFailure(code=exc.code, status=exc.status, reason=exc.message, final=True),
    )


async def _send(
    stream: web.StreamResponse, event: str, data: BaseModel, event_id: str | None = None
) -> None:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(views.dump(data), ensure_ascii=False)}")
    await stream.write(("\n".join(lines) + "\n\n").encode())
