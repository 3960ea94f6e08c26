"""The API's shapes: request bodies (validated with clear messages) and answers. The OpenAPI
document is generated from these models, so it cannot drift from the code."""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import BadRequest
from gateway.models import NotebookAction, NotebookState
from gateway.records import JobAction, JobOrigin, JobState
from gateway.references import is_branch_name, is_image_reference

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
_MILLICORES = re.compile(r"^([0-9]*\.?[0-9]+)(m?)$")  # renku's CpuField: 0.5, "0.5", "500m"


class ServerOptionsRequest(BaseModel):
    """renku's serverOptions. The processor and memory must be among those GET
    /server_options lists; renku's other options are answered (see servers/policy.choose)."""

    model_config = ConfigDict(extra="forbid")

    defaultUrl: str | None = None  # renku's camelCase names, kept for its clients
    cpu_request: float | None = None  # cores: 0.5, "0.5" or renku's "500m"
    mem_request: str | None = None
    disk_request: str | int | None = None
    gpu_request: int | str | None = None
    lfs_auto_fetch: bool | None = None

    @field_validator("cpu_request", mode="before")
    @classmethod
    def _cores(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        found = _MILLICORES.fullmatch(value.strip())
        if found is None:
            raise ValueError(f"{value!r} is not a number of cores")
        number = float(found.group(1))
        return number / 1000 if found.group(2) else number


class ServerRequest(BaseModel):
    """renku-notebooks' POST /servers body (servers_post.py), as renku-ui 2.x and 3.x and
    renku-python send it. Unknown keys are ignored, as renku ignores them."""

    model_config = ConfigDict(extra="ignore")

    namespace: str = Field(min_length=1, max_length=255)
    project: str = Field(min_length=1, max_length=255)
    # A full commit id or a unique prefix of one (at least 4 digits, as git allows).
    commit_sha: str = Field(pattern=r"^[0-9a-fA-F]{4,40}$")
    branch: str | None = None
    notebook: str | None = None
    image: str | None = None
    serverOptions: ServerOptionsRequest = Field(default_factory=ServerOptionsRequest)
    # renku's keys beside serverOptions: answered, never dropped without a word.
    default_url: str | None = None
    lfs_auto_fetch: bool | None = None
    storage: int | None = None  # gigabytes of disk (renku 1.x with resource classes)
    resource_class_id: int | None = None
    environment_variables: dict[str, str] | None = None
    cloudstorage: list[Any] | None = None
    user_secrets: Any = None

    @field_validator("commit_sha")
    @classmethod
    def _commit(cls, value: str) -> str:
        return value.lower()

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _GITLAB_PATH.fullmatch(value) or ".." in value.split("/"):
            raise ValueError(f"{value!r} is not a GitLab group path")
        return value.lower()  # GitLab's paths are not case-sensitive; renku lowercases too

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if "/" in value or not _GITLAB_PATH.fullmatch(value) or value in (".", ".."):
            raise ValueError(f"{value!r} is not a GitLab project path")
        return value.lower()

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is not None and not is_branch_name(value):
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
        if value and not is_image_reference(value):
            raise ValueError(f"{value!r} is not an image reference")
        return value or None


class ServerStep(BaseModel):
    step: str
    status: StepStatus


class ServerWarning(BaseModel):
    message: str
    critical: bool


ServerPhase = Literal["starting", "running", "stopping", "failed"]
StepStatus = Literal["ready", "waiting", "executing", "failed"]


class ServerStatus(BaseModel):
    """renku's: `state` and `message` (1.5 to 1.11), the launch's steps and how many are
    ready (from 1.12), and what was asked for and not done."""

    state: ServerPhase
    message: str
    details: list[ServerStep]
    totalNumContainers: int
    readyNumContainers: int
    warnings: list[ServerWarning]


class ResourceRequests(BaseModel):
    cpu: float
    memory: str  # as chosen from the server options, in Docker's units


class ResourceUsage(BaseModel):
    cpu: float | None = None  # cores, when the engine has two samples to tell
    memory: str | None = None  # renku's decimal gigabytes
    storage: str | None = None  # the work area's, when the engine counts it


class ServerResources(BaseModel):
    requests: ResourceRequests
    usage: ResourceUsage


class Server(BaseModel):
    name: str
    url: str
    image: str
    started: str | None  # ISO 8601; null when unknown
    status: ServerStatus
    # Ours (namespace, project, branch, commit_sha, notebook, user) and renku's renku.io/*.
    annotations: dict[str, str]
    resources: ServerResources
    volume: ServerVolume | None  # the work area; null for a published notebook


class ServerVolume(BaseModel):
    name: str
    size: int | None  # bytes; null when the engine does not count it (yet)


class Volume(BaseModel):
    """A user's work area for one project, as an admin sees it."""

    name: str
    user: str
    user_id: int
    namespace: str
    project: str
    size: int | None
    node: str  # Swarm: the node that holds it
    created_at: str
    used_at: str
    servers: list[str]  # the servers that use it now


class VolumeList(BaseModel):
    volumes: list[Volume]


class ServerList(BaseModel):
    servers: dict[str, Server]


class ServerOption(BaseModel):
    order: int
    displayName: str
    type: Literal["enum"]
    default: float | str
    options: list[float | str]


class CloudStorageOption(BaseModel):
    enabled: bool


class CloudStorageOptions(BaseModel):
    """renku 1.31's `{enabled}` and 1.10's `{s3: {enabled}}` at once: there is none here."""

    enabled: bool
    s3: CloudStorageOption


class ServerOptions(BaseModel):
    defaultUrl: ServerOption
    cpu_request: ServerOption
    mem_request: ServerOption
    cloudstorage: CloudStorageOptions


class ServerLogs(BaseModel):
    """renku's shape: the log text under the container's role."""

    model_config = ConfigDict(populate_by_name=True)

    jupyter_server: str = Field(alias="jupyter-server")


class ImageCheck(BaseModel):
    """GET /images: the image may be used (renku answers 200 without a body)."""

    image_url: str
    available: Literal[True]


class NotebookResult(BaseModel):
    name: str
    project: str
    url: str
    state: NotebookState
    action: NotebookAction
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
    action: JobAction
    origin: JobOrigin
    state: JobState
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


class JobLine(LogEntry):
    """GET /jobs/{id}/events: a line of the job's log, as an event named by its phase."""

    job: str
    final: Literal[False]


class JobWaiting(BaseModel):
    """GET /jobs/{id}/events: the job was folded into a later one, followed from here on."""

    job: str
    message: str
    final: Literal[False]


class JobEnd(BaseModel):
    """GET /jobs/{id}/events: the last event, with the finished job."""

    job: Job
    final: Literal[True]


class StreamFailure(BaseModel):
    """GET /jobs/{id}/events: the last event when the job cannot be followed (any more)."""

    code: str
    status: int
    reason: str
    final: Literal[True]


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


NotebookRowState = Literal["running", "failed", "stopped", "missing"]


class StatusNotebook(BaseModel):
    name: str
    container: str
    state: NotebookRowState
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


class Deployments(BaseModel):
    """What is published: every project's notebooks, and the jobs under way."""

    projects: list[StatusProject]
    jobs: list[StatusJob]
    commit: str | None  # the branch's last fetched commit


class StatusOverview(Deployments):
    admin: bool
    servers: list[Server]  # users' servers, for an admin
    volumes: list[Volume]  # users' work areas, for an admin


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
