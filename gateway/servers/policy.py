"""What users may ask for and what they are told: the servers API's rules, pure. The settings
say what is on offer (SERVER_*_OPTIONS, ALLOWED_IMAGES); these functions hold requests to it."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

from gateway import naming
from gateway.errors import BadRequest, NotebookFailed, Unsatisfiable
from gateway.models import ContainerState
from gateway.records import ServerRecord, ServerState
from gateway.schemas import (
    CloudStorageOption,
    CloudStorageOptions,
    ServerOption,
    ServerOptions,
    ServerPhase,
    ServerRequest,
)
from gateway.settings import ServerSettings, parse_bytes

# What a failure means, in the words of someone who only wanted a notebook.
FAILURES = {
    "invalid_notebook": "the notebook is not a valid Jupyter notebook",
    "build_failed": "the image build failed",
    "push_failed": "the image could not be pushed to the registry",
    "start_failed": "Jupyter stopped while starting",
    "not_ready": "the server never became ready",
    "out_of_memory": "the server ran out of memory",
}


def options(s: ServerSettings) -> ServerOptions:
    """What a user may choose, in renku's shape; no cloud storage (renku 1.31 and 1.10 say
    so differently: both are there)."""
    return ServerOptions(
        defaultUrl=_option(
            1, "Default Environment", s.server_default_urls[0], s.server_default_urls
        ),
        cpu_request=_option(2, "Number of CPUs", s.server_cpu_default, s.server_cpu_options),
        mem_request=_option(
            3, "Amount of Memory", s.server_memory_default, s.server_memory_options
        ),
        cloudstorage=CloudStorageOptions(enabled=False, s3=CloudStorageOption(enabled=False)),
    )


def _option(order: int, name: str, default: Any, choices: Iterable[Any]) -> ServerOption:
    return ServerOption(
        order=order, displayName=name, type="enum", default=default, options=list(choices)
    )


def choose(s: ServerSettings, request: ServerRequest) -> tuple[dict[str, Any], Sequence[str]]:
    """The options a server starts with, and what was asked for and is not done here.
    Processor, memory and default URL must be among GET /server_options (400 otherwise);
    renku's other options are ignored with a warning when they mean nothing here, and
    refused (422) when they cannot be had: a GPU, cloud storage, secrets, variables."""
    chosen = request.serverOptions
    cpu = s.server_cpu_default if chosen.cpu_request is None else chosen.cpu_request
    url = chosen.defaultUrl or request.default_url or s.server_default_urls[0]
    memory = memory_option(s, chosen.mem_request or s.server_memory_default)
    problems = []
    if cpu not in s.server_cpu_options:
        problems.append(
            f"serverOptions.cpu_request: {chosen.cpu_request!r} is not one of"
            f" {list(s.server_cpu_options)}"
        )
    if memory is None:
        problems.append(
            f"serverOptions.mem_request: {chosen.mem_request!r} is not one of"
            f" {list(s.server_memory_options)}"
        )
    if url not in s.server_default_urls:
        problems.append(
            f"serverOptions.defaultUrl: {url!r} is not one of {list(s.server_default_urls)}"
        )
    if problems:
        raise BadRequest("; ".join(problems), detail={"problems": problems})
    refused = []
    if chosen.gpu_request not in (None, 0, "0", ""):
        refused.append(f"serverOptions.gpu_request: {chosen.gpu_request!r}: there are no GPUs")
    if request.environment_variables:
        refused.append("environment_variables: servers here cannot be given variables")
    if request.cloudstorage:
        refused.append("cloudstorage: cloud storage cannot be mounted here")
    if request.user_secrets:
        refused.append("user_secrets: secrets cannot be mounted here")
    if refused:
        raise Unsatisfiable("; ".join(refused), detail={"problems": refused})
    warnings = []
    if chosen.disk_request not in (None, "", 0) or request.storage is not None:
        warnings.append(
            "disk_request/storage ignored: a server's files live in its work area, a"
            " volume without a quota of its own"
        )
    if chosen.lfs_auto_fetch or request.lfs_auto_fetch:
        warnings.append(
            "lfs_auto_fetch ignored: Git LFS files are not fetched, they show as pointers"
        )
    if request.resource_class_id is not None:
        warnings.append(
            "resource_class_id ignored: there are no resource classes here; the server"
            " has the serverOptions' processor and memory, or the defaults"
        )
    return {"defaultUrl": url, "cpu_request": cpu, "mem_request": memory}, warnings


def memory_option(s: ServerSettings, asked: str) -> str | None:
    """The memory option meant: written as listed, or the same size otherwise ("1024M"
    for "1G"; Docker's binary units)."""
    if asked in s.server_memory_options:
        return asked
    try:
        size = parse_bytes(asked)
    except ValueError:
        return None
    return next((o for o in s.server_memory_options if parse_bytes(o) == size), None)


def allowed(s: ServerSettings, image: str) -> bool:
    """BASE_IMAGE, which servers start from anyway, and what ALLOWED_IMAGES lets users
    choose; never an image this gateway built, whatever the patterns say: it holds a
    project's files, maybe private ones."""
    if image.startswith(f"{naming.image_prefix(s.registry_host)}/{s.instance}/"):
        return False
    patterns = s.allowed_images
    return image == s.base_image or any(fnmatch.fnmatchcase(image, p) for p in patterns)


_RECORDED: dict[ServerState, ServerPhase] = {
    ServerState.STARTING: "starting",
    ServerState.STOPPING: "stopping",
    ServerState.FAILED: "failed",
}


def server_status(
    recorded: ServerState,
    message: str,
    has_container: bool,
    container: ContainerState | None,
    memory_mib: int,
) -> tuple[ServerPhase, str]:
    """The state a user sees, from how far the launch got and how the container is doing.
    `container` is only inspected when it is not running."""
    if recorded is not ServerState.RUNNING:
        return _RECORDED[recorded], message
    if not has_container:
        return "failed", "the server's container is gone; start it again"
    if container is None:
        return "running", ""
    if container.oom_killed:
        return (
            "failed",
            f"the server ran out of memory (limit {memory_mib} MiB); restart it or ask for more",
        )
    if container.status == "unplaced":
        return "failed", f"no node can run the server now: {container.error}"
    if container.status == "restarting" or (container.running and container.restart_count):
        return "starting", "restarting after a crash"
    if not container.running:
        return "failed", f"the server stopped unexpectedly (exit code {container.exit_code})"
    return "running", ""


def in_words(failure: NotebookFailed, record: ServerRecord) -> str:
    """A failed start as its user is told it."""
    words = FAILURES.get(failure.reason, "the server could not start")
    if failure.reason == "out_of_memory":
        return f"{words} (limit {record.options['mem_request']}); ask for more memory"
    if failure.message.startswith(words):
        return failure.message
    return f"{words}: {failure.message}"


def notebook_host(host: str, base_domain: str) -> str | None:
    """The label of a host under BASE_DOMAIN that may be a notebook's (a published notebook's
    has "--" in it, a server's is the server's name); None for any other host."""
    label, dot, domain = host.lower().partition(".")
    return label if dot and domain == base_domain and label else None


def compared(key: str, value: str) -> str:
    """An annotation as a GET /servers filter compares it: GitLab paths whatever their case."""
    return value.lower() if key in ("namespace", "project", "commit_sha") else value
