"""The API's shapes: request bodies (validated with clear messages) and answers. The OpenAPI
document is generated from these models, so it cannot drift from the code."""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import BadRequest

MAX_PROJECT_NAME = 255


def check_project_name(name: str) -> str:
    """A plain top-level folder name: no path separators, no '.' or '..', nothing hidden."""
    if not name:
        raise ValueError("must not be empty")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"{name!r} is not a plain folder name")
    if name.startswith("."):
        raise ValueError(f"{name!r} is a hidden folder, not a project")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("must not contain control characters")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PROJECT_NAME:
        raise ValueError(f"must be at most {MAX_PROJECT_NAME} bytes")
    return name


class ProjectDelete(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    project: str

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return check_project_name(value)


class ProjectUpdate(ProjectDelete):
    action: Literal["update"]


_GITLAB_PATH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9_./-]{1,255}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")


class ServerOptionsRequest(BaseModel):
    """renku's serverOptions; values must be among those GET /server_options lists."""

    model_config = ConfigDict(extra="forbid")

    defaultUrl: str | None = None  # renku's camelCase names, kept for its clients
    cpu_request: float | None = None
    mem_request: str | None = None


class ServerRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    namespace: str = Field(min_length=1, max_length=255)
    project: str = Field(min_length=1, max_length=255)
    commit_sha: str = Field(pattern=r"^[0-9a-f]{40}$")
    branch: str | None = None
    notebook: str | None = None
    image: str | None = None
    serverOptions: ServerOptionsRequest = Field(default_factory=ServerOptionsRequest)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _GITLAB_PATH.fullmatch(value) or ".." in value.split("/"):
            raise ValueError(f"{value!r} is not a GitLab group path")
        return value

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if "/" in value or not _GITLAB_PATH.fullmatch(value) or value in (".", ".."):
            raise ValueError(f"{value!r} is not a GitLab project path")
        return value

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is not None and (not _BRANCH.fullmatch(value) or value.endswith((".lock", "/"))):
            raise ValueError(f"{value!r} is not a branch name")
        return value

    @field_validator("notebook")
    @classmethod
    def _notebook(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{value!r} must be a path inside the repository")
        if any(ord(c) < 32 for c in value) or not value.endswith(".ipynb"):
            raise ValueError(f"{value!r} is not a notebook path")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value and not _IMAGE.fullmatch(value):
            raise ValueError(f"{value!r} is not an image reference")
        return value or None


class ServerStatus(BaseModel):
    state: Literal["starting", "running", "stopping", "failed"]
    message: str


class ServerAnnotations(BaseModel):
    namespace: str
    project: str
    branch: str
    commit_sha: str
    notebook: str
    user: str


class ServerResources(BaseModel):
    cpu_request: float
    mem_request: str


class Server(BaseModel):
    name: str
    url: str
    image: str
    started: str
    status: ServerStatus
    annotations: ServerAnnotations
    resources: ServerResources


class ServerList(BaseModel):
    servers: dict[str, Server]


class ServerOption(BaseModel):
    order: int
    displayName: str
    type: Literal["enum"]
    default: float | str
    options: list[float | str]


class ServerOptions(BaseModel):
    defaultUrl: ServerOption
    cpu_request: ServerOption
    mem_request: ServerOption


class ServerLogs(BaseModel):
    """renku's shape: the log text under the container's role."""

    model_config = ConfigDict(populate_by_name=True)

    jupyter_server: str = Field(alias="jupyter-server")


class NotebookResult(BaseModel):
    name: str
    project: str
    url: str
    state: Literal["running", "failed", "removed"]
    action: Literal["built", "restarted", "unchanged", "removed", "none"]
    image: str
    commit: str
    reason: str | None
    message: str | None
    log: list[str]


class JobError(BaseModel):
    code: str
    status: int
    message: str
    detail: Any = None


class LogEntry(BaseModel):
    seq: int
    at: str
    phase: str
    notebook: str | None
    message: str
    output: bool  # a line of build or push output, not a step of the job


class Job(BaseModel):
    id: str
    project: str
    action: Literal["update", "delete", "push", "reconcile"]
    origin: Literal["api", "webhook", "reconcile"]
    state: Literal["queued", "running", "succeeded", "failed", "coalesced"]
    commit: str | None
    created: str
    started: str | None
    finished: str | None
    notebooks: list[NotebookResult]
    error: JobError | None
    covered_by: str | None
    parent: str | None
    url: str
    params: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    log: list[LogEntry] | None = None


class JobList(BaseModel):
    jobs: list[Job]


class WebhookAnswer(BaseModel):
    status: Literal["accepted", "duplicate", "ignored"]
    reason: str | None = None
    job: Job | None = None


class HealthCheck(BaseModel):
    ok: bool
    message: str
    seconds: float


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, HealthCheck]  # docker, git, registry, traefik


class StatusNotebook(BaseModel):
    name: str
    container: str
    state: Literal["running", "failed", "stopped", "missing"]
    url: str
    commit: str
    message: str


class StatusLastDeploy(BaseModel):
    job: str
    state: Literal["succeeded", "failed"]
    finished: str
    commit: str


class StatusProject(BaseModel):
    name: str
    notebooks: list[StatusNotebook]
    last_deploy: StatusLastDeploy | None


class StatusJob(BaseModel):
    id: str
    project: str
    action: str
    state: Literal["queued", "running"]
    created: str


class StatusOverview(BaseModel):
    admin: bool
    projects: list[StatusProject]
    jobs: list[StatusJob]
    commit: str | None  # the branch's last fetched commit
    servers: list[Server]  # users' servers, for an admin


class Index(BaseModel):
    name: str
    version: str
    endpoints: list[str]


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


T = TypeVar("T", bound=BaseModel)


def parse(model: type[T], data: object) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in error["loc"]) or "body"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required"
            elif error["type"] == "literal_error" and field == "action":
                message = "must be 'update' (use DELETE /projects to remove a project)"
            elif error["type"] == "model_type":
                message = "must be a JSON object"
            problems.append(f"{field}: {message}")
        raise BadRequest(
            "invalid request: " + "; ".join(problems), detail={"problems": problems}
        ) from None
