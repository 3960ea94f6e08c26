"""The API's OpenAPI 3.1 document, generated from the models the handlers validate requests
with and answer in (gateway/schemas.py), so it cannot drift from the code."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import __version__, schemas

routes = web.RouteTableDef()

REQUESTS: list[type[BaseModel]] = [
    schemas.ProjectUpdate,
    schemas.ProjectDelete,
    schemas.ServerRequest,
]
ANSWERS: list[type[BaseModel]] = [
    schemas.Index, schemas.Health, schemas.Job, schemas.JobList, schemas.WebhookAnswer,
    schemas.Server, schemas.ServerList, schemas.ServerOptions, schemas.ServerLogs,
    schemas.ImageCheck, schemas.VolumeList,
    schemas.StatusOverview, schemas.ErrorEnvelope,
]  # fmt: skip
ERRORS = {
    400: "The request is malformed or asks for something not allowed",
    401: "Missing or wrong credentials",
    403: "Authenticated, but not allowed",
    404: "No such thing (or not yours)",
    408: "The request body did not arrive within HTTP_TIMEOUT",
    409: "In use: a work area a server still uses",
    413: "The request body is too large",
    422: "Understood and impossible: the repository's content could not be deployed, or"
    " a server asked for what cannot be had here (a GPU, cloud storage)",
    429: "Too many requests; see Retry-After",
    502: "A service the gateway depends on failed (git, registry, Docker, Traefik, GitLab)",
    503: "The gateway or Docker is not available right now",
}


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


@cache
def document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in ANSWERS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notebook-gateway",
            "version": __version__,
            "description": "Publishes a repository of Jupyter notebooks and runs users' own "
            "notebook servers (renku-notebooks' servers API; with SERVERS_API_PREFIX set, "
            "its paths are served under that prefix too).",
        },
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "AUTH_TOKEN (admin), or a user's GitLab token",
                }
            },
        },
        "paths": _paths(),
    }


def _paths() -> dict[str, Any]:
    wait = _query(
        "wait", {"type": "boolean"}, "Answer when the job is done (default) or at once (202)"
    )
    job_answers = {
        200: ("The finished job", "Job"),
        202: ("The job, still running (?wait=false)", "Job"),
    }
    name = _path_param("name", "A server's name")
    return {
        "/": {
            "get": _op(
                "What this gateway is", {200: ("Name, version, endpoints", "Index")}, public=True
            )
        },
        "/health": {
            "get": _op(
                "Whether the gateway can work: the engine, registry, git remote and Traefik",
                {200: ("Healthy", "Health"), 503: ("Unhealthy", "Health")},
                public=True,
            )
        },
        "/status": {
            "get": _op(
                "Every project and notebook with its state, link, commit and last deploy",
                {200: ("The overview (users' servers for an admin)", "StatusOverview")},
                errors=(401,),
                public=True,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (public with METRICS_PUBLIC=true)",
                {200: ("Prometheus' text format", None)},
                content={"text/plain": {"schema": {"type": "string"}}},
            )
        },
        "/projects": {
            "post": _op(
                "Publish a project (a top-level folder of the notebooks repository)",
                job_answers,
                errors=(400, 401, 404, 413, 422, 429, 502, 503),
                body="ProjectUpdate",
                params=[wait],
            ),
            "delete": _op(
                "Remove everything of a project",
                job_answers,
                errors=(400, 401, 404, 413, 429, 502, 503),
                body="ProjectDelete",
                params=[wait],
            ),
        },
        "/reconcile": {
            "post": _op(
                "Bring every project back to what the repository says",
                job_answers,
                errors=(400, 401, 422, 429, 502, 503),
                params=[wait],
            )
        },
        "/hooks/gitlab": {
            "post": {
                **_op(
                    "A GitLab push event",
                    {
                        200: ("Ignored, or a duplicate delivery", "WebhookAnswer"),
                        202: ("Accepted", "WebhookAnswer"),
                    },
                    errors=(400, 401, 404, 413, 429),
                    public=True,
                    params=[
                        _header(
                            "X-Gitlab-Token", True, "The webhook's secret token (WEBHOOK_SECRET)"
                        ),
                        _header("X-Gitlab-Event", False, "GitLab's event name"),
                        _header("Idempotency-Key", False, "Equal for redeliveries of one event"),
                    ],
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            }
        },
        "/jobs": {
            "get": _op(
                "Recent jobs, newest first",
                {200: ("Jobs", "JobList")},
                errors=(400, 401),
                params=[
                    _query(
                        "project", {"type": "string"}, "Only this project ('*': pushes, reconcile)"
                    ),
                    _query(
                        "state",
                        {"enum": ["queued", "running", "succeeded", "failed", "coalesced"]},
                        "",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 500},
                        "At most this many",
                    ),
                ],
            )
        },
        "/jobs/{id}": {
            "get": _op(
                "One job, with its log",
                {200: ("The job", "Job")},
                errors=(401, 404),
                params=[_path_param("id", "A job id")],
            )
        },
        "/jobs/{id}/events": {
            "get": _op(
                "The job's progress as server-sent events, until it ends",
                {200: ("Events named by phase; the last has final: true", None)},
                errors=(401, 404),
                params=[
                    _path_param("id", "A job id"),
                    _header("Last-Event-ID", False, "The last event seen, to go on after it"),
                ],
                content={"text/event-stream": {"schema": {"type": "string"}}},
            )
        },
        "/servers": {
            "get": _op(
                "The caller's servers (an admin's: every server)",
                {200: ("Servers by name", "ServerList")},
                errors=(401, 502),
                params=[
                    _query(key, {"type": "string"}, "")
                    for key in ("namespace", "project", "branch", "commit_sha")
                ],
            ),
            "post": _op(
                "Start a server for a GitLab project at a commit",
                {200: ("The caller already has it", "Server"), 201: ("Starting", "Server")},
                errors=(400, 401, 403, 404, 413, 422, 429, 502, 503),
                body="ServerRequest",
            ),
        },
        "/servers/{name}": {
            "get": _op(
                "One server", {200: ("The server", "Server")}, errors=(401, 404, 502), params=[name]
            ),
            "delete": _op(
                "Stop a server",
                {204: ("Stopping", None)},
                errors=(400, 401, 404, 409, 502),
                params=[
                    name,
                    _query("forced", {"type": "boolean"}, "Kill it rather than stop it"),
                    _query("remove", {"type": "boolean"}, "Remove its work area too"),
                ],
            ),
        },
        "/server_options": {
            "get": _op(
                "What a server may be started with",
                {200: ("Options", "ServerOptions")},
                errors=(401, 502),
            )
        },
        "/logs/{name}": {
            "get": _op(
                "A server's recent log lines",
                {200: ("The log", "ServerLogs")},
                errors=(400, 401, 404, 502),
                params=[
                    name,
                    _query(
                        "max_lines",
                        {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                        "The last lines (default 250); 0 for all",
                    ),
                ],
            )
        },
        "/volumes": {
            "get": _op(
                "Every user's work areas (admin)",
                {200: ("Work areas", "VolumeList")},
                errors=(401, 502),
            )
        },
        "/volumes/{name}": {
            "delete": _op(
                "Remove a work area no server uses (admin)",
                {204: ("Removed", None)},
                errors=(401, 404, 409, 502),
                params=[_path_param("name", "A work area's name")],
            )
        },
        "/images": {
            "get": _op(
                "Whether an image exists, may be pulled and may be chosen (ALLOWED_IMAGES)",
                {200: ("It may be used", "ImageCheck")},
                errors=(400, 401, 404, 502),
                params=[
                    {
                        **_query("image_url", {"type": "string"}, "The image, tag included"),
                        "required": True,
                    }
                ],
            )
        },
    }


def _op(
    summary: str,
    answers: Mapping[int, tuple[str, str | None]],
    *,
    errors: tuple[int, ...] = (),
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    public: bool = False,
    content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`content` describes answers that are not JSON (every 2xx of them)."""
    responses: dict[str, Any] = {}
    for status, (text, model) in answers.items():
        answer = _json(model) if model else content
        responses[str(status)] = {"description": text, **({"content": answer} if answer else {})}
    # Any credential may be refused (401), or not looked at after too many failures (429);
    # any body may arrive too slowly (408).
    statuses = set(errors) if public else {*errors, 401, 429}
    if body:
        statuses.add(408)
    for status in sorted(statuses):
        responses[str(status)] = {"description": ERRORS[status], "content": _json("ErrorEnvelope")}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    operation["security"] = [] if public else [{"bearer": []}]
    return operation


def _json(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _header(name: str, required: bool, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": {"type": "string"},
        "description": description,
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }
