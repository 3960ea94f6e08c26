"""What the gateway remembers (the store keeps it): jobs and their logs, users' servers and
their work areas."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.models import NotebookOutcome, ProgressEvent


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COALESCED = "coalesced"  # a later job of the same project did its work (covered_by)


FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.COALESCED)


class JobAction(enum.StrEnum):
    UPDATE = "update"
    DELETE = "delete"
    PUSH = "push"  # a GitLab push: find the changed projects, queue an update for each
    RECONCILE = "reconcile"  # queue an update for every project the gateway knows of


class JobOrigin(enum.StrEnum):
    API = "api"
    WEBHOOK = "webhook"
    RECONCILE = "reconcile"


@dataclass(frozen=True)
class JobError:
    """Why a job failed, as its answer says it (the error envelope's code, status, message
    and detail)."""

    code: str
    status: int
    message: str
    detail: Any = None

    @classmethod
    def internal(cls, message: str) -> JobError:
        return cls("internal_error", 500, message)


@dataclass
class JobRecord:
    """A job as the store keeps it: what to do, and how it went."""

    id: str
    project: str
    action: JobAction
    state: JobState
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    commit: str | None = None
    notebooks: list[NotebookOutcome] = field(default_factory=list)
    error: JobError | None = None
    origin: JobOrigin = JobOrigin.API
    params: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    covered_by: str | None = None
    parent: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(frozen=True)
class LogLine:
    at: str
    event: ProgressEvent
    seq: int | None = None  # given by whoever numbers the job's lines; else the next free


def now(ago: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) - ago).isoformat(timespec="milliseconds")


class ServerState(enum.StrEnum):
    STARTING = "starting"  # building the image, or waiting for Jupyter to answer
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


@dataclass
class ServerRecord:
    """A user's server as recorded when it was asked for, and how far its start got."""

    name: str
    user_id: int
    username: str
    namespace: str
    project: str
    branch: str
    commit_sha: str
    notebook: str
    image: (
        str  # what the user asked for ("" for the base image); the built image is on the container
    )
    options: dict[str, Any]
    state: ServerState
    message: str
    url: str
    created_at: str
    updated_at: str
    gitlab_project_id: int = 0  # 0: recorded before the gateway kept it
    repository: str = ""  # the project's page on GitLab (its web_url)
    step: str = ""  # the launch step under way, or the one that failed (see LAUNCH_STEPS)
    warnings: list[str] = field(default_factory=list)  # what was asked for and not done
    volume: str = ""  # its work area; "" for a server recorded before there were any


@dataclass(frozen=True)
class WorkVolume:
    """A user's work area for one project: a volume that outlives their servers."""

    name: str
    user_id: int
    username: str
    namespace: str
    project: str
    created_at: str
    used_at: str  # when a server last started with it
    node: str = ""  # Swarm: the node that holds it ("" until a server ran there)
