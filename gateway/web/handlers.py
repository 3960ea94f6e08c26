"""HTTP handlers: parse and check the request, make one service call, serialise the answer."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.errors import BadRequest, GatewayError, JobFailed, NotFound
from gateway.services.store import Job, JobAction, JobState
from gateway.web.auth import require_admin
from gateway.web.keys import DOCKER, RUNNER, SETTINGS, STORE
from gateway.web.schemas import ProjectDelete, ProjectUpdate, parse

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "name": "notebook-gateway",
            "version": __version__,
            "endpoints": ["POST /projects", "DELETE /projects", "GET /jobs/{id}", "GET /health"],
        }
    )


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    try:
        await request.app[DOCKER].ping()
        docker = "ok"
    except GatewayError as exc:
        docker = exc.message
    ok = docker == "ok"
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "checks": {"docker": docker}},
        status=200 if ok else 503,
    )


@routes.post("/projects")
async def update_project(request: web.Request) -> web.Response:
    require_admin(request)
    body = parse(ProjectUpdate, await _json_body(request))
    return await _run_job(request, body.project, JobAction.UPDATE)


@routes.delete("/projects")
async def delete_project(request: web.Request) -> web.Response:
    require_admin(request)
    body = parse(ProjectDelete, await _json_body(request))
    return await _run_job(request, body.project, JobAction.DELETE)


@routes.get("/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    require_admin(request)
    job = await request.app[STORE].get_job(request.match_info["id"])
    if job is None:
        raise NotFound(f"there is no job {request.match_info['id']!r}")
    return web.json_response(await _job_json(request, job, with_log=True))


async def _run_job(request: web.Request, project: str, action: JobAction) -> web.Response:
    """By default answer when the work is done, so a CI job fails exactly when the deploy
    fails; with ?wait=false answer 202 at once with the job to poll."""
    wait = _flag(request, "wait", default=True)
    runner = request.app[RUNNER]
    job = await runner.submit(project, action)
    location = f"{request.app[SETTINGS].gateway_url}/jobs/{job.id}"
    if not wait:
        return web.json_response(
            await _job_json(request, job), status=202, headers={"Location": location}
        )
    job = await runner.wait(job.id)
    body = await _job_json(request, job, with_log=job.state is JobState.FAILED)
    if job.state is JobState.SUCCEEDED:
        return web.json_response(body, headers={"Location": location})
    error = job.error or {}
    raise JobFailed(
        error.get("message", "the job failed"),
        code=str(error.get("code", "internal_error")),
        status=int(error.get("status", 500)),
        detail={**(error.get("detail") or {}), "job": body},
    )


async def _job_json(request: web.Request, job: Job, with_log: bool = False) -> dict[str, Any]:
    body = job.to_json()
    body["url"] = f"{request.app[SETTINGS].gateway_url}/jobs/{job.id}"
    if with_log:
        body["log"] = await request.app[STORE].job_log(job.id)
    return body


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()  # bounded by the app's client_max_size (413 beyond it)
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"query parameter {name!r} must be true or false")
