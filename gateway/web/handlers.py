"""HTTP handlers: parse and check the request, make one service call, serialise the answer."""

from __future__ import annotations

import hmac
import json

from aiohttp import web

from gateway import __version__, webhooks
from gateway.errors import BadRequest, JobFailed, NotFound, Unavailable
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.models import serving
from gateway.records import JobAction, JobError, JobOrigin, JobRecord, JobState
from gateway.schemas import Index, Job, JobList, ProjectDelete, ProjectUpdate, WebhookAnswer, parse
from gateway.services.runner import REPOSITORY
from gateway.web import views
from gateway.web.auth import failed_check, refuse_guessing, require_admin
from gateway.web.http import MAX_NOTIFICATION, flag, int_param, json_body
from gateway.web.keys import (
    API_DOCUMENT,
    ENDPOINTS,
    HEALTH,
    IDENTITY,
    METRICS,
    REDACT,
    RUNNER,
    RUNTIME,
    SERVERS,
    SETTINGS,
    STORE,
)

MAX_JOBS_LISTED = 500


def index_json(request: web.Request) -> web.Response:
    index = Index(name="notebook-gateway", version=__version__, endpoints=request.app[ENDPOINTS])
    return views.answer(index)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[API_DOCUMENT])


async def health(request: web.Request) -> web.Response:
    """200 when the gateway can work (every check passes), 503 and what fails otherwise."""
    health = views.health(await request.app[HEALTH].run())
    redact = request.app[REDACT]
    return web.Response(
        text=redact(json.dumps(views.dump(health))),
        status=200 if health.status == "ok" else 503,
        content_type="application/json",
    )


async def metrics(request: web.Request) -> web.Response:
    if not request.app[SETTINGS].metrics_public:
        require_admin(request)
    metrics, runtime = request.app[METRICS], request.app[RUNTIME]
    # Counted when asked, from the runtime's in-memory index.
    published = sum(n.running for n in serving(await runtime.list_notebooks()).values())
    users = sum(s.state == "running" for s in await runtime.list_servers())
    metrics.running.labels("published").set(published)
    metrics.running.labels("user").set(users)
    metrics.work_area_bytes.clear()  # removed work areas go
    for volume in await request.app[SERVERS].volumes():
        if volume.size is not None:
            metrics.work_area_bytes.labels(volume.name, volume.user).set(volume.size)
    response = web.Response(body=metrics.render())
    response.content_type = METRICS_CONTENT_TYPE.split(";")[0]
    response.charset = "utf-8"
    return response


async def update_project(request: web.Request) -> web.Response:
    require_admin(request)
    body = parse(ProjectUpdate, await json_body(request, MAX_NOTIFICATION))
    return await _run_job(request, body.project, JobAction.UPDATE)


async def delete_project(request: web.Request) -> web.Response:
    require_admin(request)
    body = parse(ProjectDelete, await json_body(request, MAX_NOTIFICATION))
    return await _run_job(request, body.project, JobAction.DELETE)


async def reconcile(request: web.Request) -> web.Response:
    """Bring every project back to what the repository says, now rather than at the next
    periodic pass."""
    require_admin(request)
    await request.app[SERVERS].lifecycle.reconcile()
    return await _run_job(request, REPOSITORY, JobAction.RECONCILE)


async def gitlab_hook(request: web.Request) -> web.Response:
    """GitLab push events. Answers at once; the work happens in the background."""
    settings = request.app[SETTINGS]
    if settings.webhook_secret is None:
        raise NotFound("webhooks are not enabled; set WEBHOOK_SECRET")
    given = request.headers.get("X-Gitlab-Token", "").encode()
    # GitLab's own deliveries are never limited (it disables a hook after a few failures);
    # wrong secrets count against the client like any failed credential.
    if not hmac.compare_digest(given, settings.webhook_secret.get_secret_value().encode()):
        refuse_guessing(request)
        raise failed_check(request, "missing or wrong X-Gitlab-Token (the hook's secret token)")
    event = webhooks.classify(
        request.headers,
        await json_body(request),
        branch=settings.git_branch,
        repository=await request.app[IDENTITY].get(),
        bot_email=settings.git_bot_email,
    )
    if isinstance(event, webhooks.Ignored):
        return views.answer(WebhookAnswer(status="ignored", reason=event.reason))
    job, created = await request.app[RUNNER].submit(
        REPOSITORY,
        JobAction.PUSH,
        origin=JobOrigin.WEBHOOK,
        params=event.params(),
        dedupe_key=event.dedupe_key,
        dedupe_within=event.dedupe_within,
        idempotency_key=event.idempotency_key,
    )
    body = WebhookAnswer(
        status="accepted" if created else "duplicate", job=await job_view(request, job)
    )
    return views.answer(body, status=202 if created else 200)


async def list_jobs(request: web.Request) -> web.Response:
    require_admin(request)
    state = request.query.get("state")
    if state is not None and state not in set(JobState):
        raise BadRequest(f"state must be one of {', '.join(JobState)}")
    limit = int_param(request, "limit", 50, 1, MAX_JOBS_LISTED)
    jobs = await request.app[STORE].list_jobs(
        project=request.query.get("project"), state=state, limit=limit
    )
    return views.answer(JobList(jobs=[await job_view(request, job) for job in jobs]))


async def get_job(request: web.Request) -> web.Response:
    require_admin(request)
    job = await request.app[STORE].get_job(request.match_info["id"])
    if job is None:
        raise NotFound(f"there is no job {request.match_info['id']!r}")
    return views.answer(await job_view(request, job, with_log=True))


async def _run_job(request: web.Request, project: str, action: JobAction) -> web.Response:
    """By default answer when the work is done, so a CI job fails exactly when the deploy
    fails; with ?wait=false answer 202 at once with the job to poll."""
    wait = flag(request, "wait", default=True)
    runner = request.app[RUNNER]
    job, _ = await runner.submit(project, action)
    if not wait:
        body = await job_view(request, job)
        return views.answer(body, status=202, headers={"Location": body.url})
    # The answer is the job that did the work: this one, or a later one it was folded into.
    job = await runner.wait(job.id)
    body = await job_view(request, job, with_log=job.state is JobState.FAILED)
    if job.state is JobState.SUCCEEDED:
        return views.answer(body, headers={"Location": body.url})
    if not job.finished:
        raise Unavailable(
            "the gateway is shutting down; the job resumes when it starts again",
            detail={"job": views.dump(body)},
        )
    error = job.error or JobError.internal("the job failed")
    raise JobFailed(
        error.message,
        code=error.code,
        status=error.status,
        detail={**(error.detail or {}), "job": views.dump(body)},
    )


async def job_view(request: web.Request, job: JobRecord, with_log: bool = False) -> Job:
    url = f"{request.app[SETTINGS].gateway_url}/jobs/{job.id}"
    log = await request.app[STORE].job_log(job.id) if with_log else None
    return views.job(job, url, log)
