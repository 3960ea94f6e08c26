"""A server as renku's clients read it, in renku-notebooks' shapes: the annotations, resources
and status of `renku_notebooks/api/schemas/servers_get.py` and `config/static.py` (1.10 and
1.31), which renku-ui and renku-python read. Pure: the servers service supplies the facts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from gateway.models import Usage
from gateway.schemas import (
    ResourceRequests,
    ResourceUsage,
    ServerPhase,
    ServerResources,
    ServerStatus,
    ServerStep,
    ServerWarning,
    StepStatus,
)

RENKU = "renku.io/"

# The steps of a server's launch, in order, and how renku's `status.details` names them.
LAUNCH_STEPS = {
    "cloning": "Cloning the repository",
    "building": "Building the image",
    "pushing": "Pushing the image to the registry",
    "starting": "Starting Jupyter",
    "answering": "Waiting for Jupyter to answer",
}
READY: Final = "ready"
WAITING: Final = "waiting"
EXECUTING: Final = "executing"
FAILED: Final = "failed"


def size(value: int) -> str:
    """Bytes as renku writes them: decimal gigabytes, two decimals when not whole
    (custom_fields.py, ByteSizeField._serialize)."""
    gigabytes = value / 1_000_000_000
    return f"{gigabytes:.2f}G" if gigabytes % 1 else f"{gigabytes:.0f}G"


def details(steps: Sequence[str], state: ServerPhase, current: str) -> list[ServerStep]:
    """Each step of the launch and where it stands, as renku's `status.details`. `current`
    is the step under way, or the one that failed; "" before the first."""
    statuses: list[StepStatus]
    if state in ("running", "stopping"):
        statuses = [READY] * len(steps)
    else:
        at = steps.index(current) if current in steps else -1
        if state == "failed" and at < 0:
            at = 0
        now: StepStatus = FAILED if state == "failed" else EXECUTING
        statuses = [READY if i < at else now if i == at else WAITING for i in range(len(steps))]
    return [
        ServerStep(step=LAUNCH_STEPS[step], status=status)
        for step, status in zip(steps, statuses, strict=True)
    ]


def status(
    state: ServerPhase, message: str, steps: list[ServerStep], warnings: Sequence[str] = ()
) -> ServerStatus:
    """renku's ServerStatus: 1.5 to 1.11 read `state` and `message`; from 1.12 the steps
    (`details`) and how many are ready draw the progress."""
    return ServerStatus(
        state=state,
        message=message,
        details=steps,
        totalNumContainers=len(steps),
        readyNumContainers=sum(step.status == READY for step in steps),
        warnings=[ServerWarning(message=warning, critical=False) for warning in warnings],
    )


def resources(
    cpu: float, memory: str, usage: Usage | None, storage: int | None = None
) -> ServerResources:
    """renku's UserPodResources: what was asked for and, when the engine says, what is used
    (`storage`: the bytes in the work area). `memory` is the size as chosen from the server
    options (Docker's units)."""
    used: dict[str, Any] = {}
    if storage is not None:
        used["storage"] = size(storage)
    if usage is not None and usage.cpu is not None:
        used["cpu"] = round(usage.cpu, 3)
    if usage is not None and usage.memory is not None:
        used["memory"] = size(usage.memory)
    # Only what the engine says is there: an answer leaves out what it cannot tell.
    return ServerResources(
        requests=ResourceRequests(cpu=cpu, memory=memory), usage=ResourceUsage(**used)
    )


def annotate(
    ours: Mapping[str, str],
    *,
    namespace: str,
    project: str,
    branch: str,
    commit_sha: str,
    repository: str,
    server_name: str,
    username: str = "",
    gitlab_project_id: int = 0,
    git_host: str = "",
) -> dict[str, str]:
    """Ours, and renku's beside them: the six every renku client needs (config/static.py
    `required_annotation_names`) and the optional ones it links with. The server image is
    always the project's own environment, never a fallback: `default_image_used` is False."""
    found = {
        **ours,
        f"{RENKU}namespace": namespace,
        f"{RENKU}projectName": project,
        f"{RENKU}branch": branch,
        f"{RENKU}commit-sha": commit_sha,
        f"{RENKU}repository": repository,
        f"{RENKU}default_image_used": "False",
        f"{RENKU}servername": server_name,
    }
    if username:
        found[f"{RENKU}username"] = username
    if gitlab_project_id:
        found[f"{RENKU}gitlabProjectId"] = str(gitlab_project_id)
    if git_host:
        found[f"{RENKU}git-host"] = git_host
    return found
