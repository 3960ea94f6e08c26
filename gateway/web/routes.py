"""Every route the gateway serves, in one table: it registers them (create_app), lists the API
for GET / and describes it in the OpenAPI document (openapi.py). A route without an operation
is not part of the API: the status page's forms, the proxy's forward-auth and login."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway import schemas
from gateway.web import events, handlers, proxy_auth, servers, status

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = Path(__file__).resolve().parent.parent / "static"


@dataclass(frozen=True)
class Operation:
    """How the OpenAPI document describes a route."""

    summary: str
    answers: Mapping[int, tuple[str, type[BaseModel] | None]]  # status: (what, model)
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    params: tuple[dict[str, Any], ...] = ()
    public: bool = False  # no credentials needed
    content: str = ""  # the media type of answers that are not JSON
    any_body: bool = False  # takes any JSON object (GitLab's webhook payloads)
    events: tuple[type[BaseModel], ...] = ()  # what a server-sent event's data may be


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    operation: Operation | None = None
    servers_api: bool = False  # served under SERVERS_API_PREFIX too


def parameter(
    where: str, name: str, description: str, schema: dict[str, Any], required: bool
) -> dict[str, Any]:
    """An OpenAPI parameter object."""
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


def query(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return parameter("query", name, description, schema, required)


def header(name: str, required: bool, description: str) -> dict[str, Any]:
    return parameter("header", name, description, {"type": "string"}, required)


def path_param(name: str, description: str) -> dict[str, Any]:
    return parameter("path", name, description, {"type": "string"}, True)


WAIT = query("wait", {"type": "boolean"}, "Answer when the job is done (default) or at once (202)")
JOB_ANSWERS = {
    200: ("The finished job", schemas.Job),
    202: ("The job, still running (?wait=false)", schemas.Job),
}
SERVER_NAME = path_param("name", "A server's name")
JOB_ID = path_param("id", "A job id")

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", status.index, Operation(
        "What this gateway is (the status page, for a browser)",
        {200: ("Name, version, endpoints", schemas.Index)}, public=True,
    )),
    Route("GET", "/health", handlers.health, Operation(
        "Whether the gateway can work: the engine, registry, git remote and Traefik",
        {200: ("Healthy", schemas.Health), 503: ("Unhealthy", schemas.Health)}, public=True,
    )),
    Route("GET", "/status", status.status, Operation(
        "Every project and notebook with its state, link, commit and last deploy",
        {200: ("The overview (users' servers for an admin)", schemas.StatusOverview)},
        errors=(401,), public=True,
    )),
    Route("GET", "/metrics", handlers.metrics, Operation(
        "Prometheus metrics (public with METRICS_PUBLIC=true)",
        {200: ("Prometheus' text format", None)}, content="text/plain",
    )),
    Route("POST", "/projects", handlers.update_project, Operation(
        "Publish a project (a top-level folder of the notebooks repository)", JOB_ANSWERS,
        errors=(400, 401, 404, 413, 422, 429, 502, 503), body=schemas.ProjectUpdate,
        params=(WAIT,),
    )),
    Route("DELETE", "/projects", handlers.delete_project, Operation(
        "Remove everything of a project", JOB_ANSWERS,
        errors=(400, 401, 404, 413, 429, 502, 503), body=schemas.ProjectDelete, params=(WAIT,),
    )),
    Route("POST", "/hooks/gitlab", handlers.gitlab_hook, Operation(
        "A GitLab push event",
        {
            200: ("Ignored, or a duplicate delivery", schemas.WebhookAnswer),
            202: ("Accepted", schemas.WebhookAnswer),
        },
        errors=(400, 401, 404, 413, 429), public=True, any_body=True,
        params=(
            header("X-Gitlab-Token", True, "The webhook's secret token (WEBHOOK_SECRET)"),
            header("X-Gitlab-Event", False, "GitLab's event name"),
            header("Idempotency-Key", False, "Equal for redeliveries of one event"),
        ),
    )),
    Route("GET", "/jobs", handlers.list_jobs, Operation(
        "Recent jobs, newest first", {200: ("Jobs", schemas.JobList)}, errors=(400, 401),
        params=(
            query("project", {"type": "string"}, "Only this project ('*': pushes, reconcile)"),
            query(
                "state", {"enum": ["queued", "running", "succeeded", "failed", "coalesced"]}, ""
            ),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "At most this many"),
        ),
    )),
    Route("GET", "/jobs/{id}", handlers.get_job, Operation(
        "One job, with its log", {200: ("The job", schemas.Job)}, errors=(401, 404),
        params=(JOB_ID,),
    )),
    Route("GET", "/jobs/{id}/events", events.job_events, Operation(
        "The job's progress as server-sent events, until it ends",
        {200: ("Events named by phase; the last has final: true", None)},
        errors=(401, 404), content="text/event-stream",
        events=(schemas.JobLine, schemas.JobWaiting, schemas.JobEnd, schemas.StreamFailure),
        params=(JOB_ID, header("Last-Event-ID", False, "The last event seen, to go on after it")),
    )),
    Route("POST", "/reconcile", handlers.reconcile, Operation(
        "Bring every project back to what the repository says", JOB_ANSWERS,
        errors=(400, 401, 422, 429, 502, 503), params=(WAIT,),
    )),
    Route("GET", "/servers", servers.list_servers, Operation(
        "The caller's servers (an admin's: every server)",
        {200: ("Servers by name", schemas.ServerList)}, errors=(401, 502),
        params=tuple(query(key, {"type": "string"}, "") for key in servers.FILTERS),
    ), servers_api=True),
    Route("POST", "/servers", servers.start_server, Operation(
        "Start a server for a GitLab project at a commit",
        {200: ("The caller already has it", schemas.Server), 201: ("Starting", schemas.Server)},
        errors=(400, 401, 403, 404, 413, 422, 429, 502, 503), body=schemas.ServerRequest,
    ), servers_api=True),
    Route("GET", "/servers/{name}", servers.get_server, Operation(
        "One server", {200: ("The server", schemas.Server)}, errors=(401, 404, 502),
        params=(SERVER_NAME,),
    ), servers_api=True),
    Route("DELETE", "/servers/{name}", servers.stop_server, Operation(
        "Stop a server", {204: ("Stopping", None)}, errors=(400, 401, 404, 409, 502),
        params=(
            SERVER_NAME,
            query("forced", {"type": "boolean"}, "Kill it rather than stop it"),
            query("remove", {"type": "boolean"}, "Remove its work area too"),
        ),
    ), servers_api=True),
    Route("GET", "/server_options", servers.server_options, Operation(
        "What a server may be started with", {200: ("Options", schemas.ServerOptions)},
        errors=(401, 502),
    ), servers_api=True),
    Route("GET", "/logs/{name}", servers.server_logs, Operation(
        "A server's recent log lines", {200: ("The log", schemas.ServerLogs)},
        errors=(400, 401, 404, 502),
        params=(
            SERVER_NAME,
            query(
                "max_lines", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                "The last lines (default 250); 0 for all",
            ),
        ),
    ), servers_api=True),
    Route("GET", "/images", servers.check_image, Operation(
        "Whether an image exists, may be pulled and may be chosen (ALLOWED_IMAGES)",
        {200: ("It may be used", schemas.ImageCheck)}, errors=(400, 401, 404, 502),
        params=(query("image_url", {"type": "string"}, "The image, tag included", True),),
    ), servers_api=True),
    Route("GET", "/volumes", servers.list_volumes, Operation(
        "Every user's work areas (admin)", {200: ("Work areas", schemas.VolumeList)},
        errors=(401, 502),
    ), servers_api=True),
    Route("DELETE", "/volumes/{name}", servers.remove_volume, Operation(
        "Remove a work area no server uses (admin)", {204: ("Removed", None)},
        errors=(401, 404, 409, 502), params=(path_param("name", "A work area's name"),),
    ), servers_api=True),
    Route("GET", "/openapi.json", handlers.openapi_json),
    # The status page's own requests, and the proxy's: not part of the API.
    Route("GET", "/status/board", status.board),
    Route("POST", "/login", status.log_in),
    Route("POST", "/logout", status.log_out),
    Route("*", "/auth/forward", proxy_auth.forward_auth),
    Route("GET", "/auth/login", proxy_auth.login_page),
    Route("POST", "/auth/login", proxy_auth.login),
)  # fmt: skip


def endpoints(routes: tuple[Route, ...] = ROUTES) -> list[str]:
    """What GET / lists: the API, and its document."""
    listed = [r for r in routes if r.path != "/" and (r.operation or r.path == "/openapi.json")]
    return [f"{r.method} {r.path}" for r in listed]


def register(
    app: web.Application, servers_api_prefix: str, routes: tuple[Route, ...] = ROUTES
) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
        if servers_api_prefix and route.servers_api:  # where renku's clients look
            app.router.add_route(route.method, servers_api_prefix + route.path, route.handler)
    app.router.add_static("/static", STATIC, append_version=False)
