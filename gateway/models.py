"""Plain data passed between the layers. Nothing here talks to the outside world."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gateway import naming


@dataclass(frozen=True)
class Identity:
    """Who is asking: the admin, or a GitLab user."""

    admin: bool
    user_id: int  # 0 for the admin
    username: str
    token: str = field(default="", repr=False)  # acts on GitLab as this user; never stored

    @classmethod
    def administrator(cls) -> Identity:
        return cls(admin=True, user_id=0, username="admin")


@dataclass(frozen=True)
class RepoFile:
    """A regular file of the repository at one commit, identified by its git blob."""

    path: str  # relative to the project folder, POSIX separators
    blob: str  # git blob sha (already a hash of the content)
    size: int
    executable: bool = False


@dataclass(frozen=True)
class ProjectSnapshot:
    """One top-level folder of the repository at one commit."""

    name: str
    commit: str
    notebooks: tuple[RepoFile, ...]
    shared: tuple[RepoFile, ...]  # every other file (data, helpers, requirements.txt)
    requirements: RepoFile | None


@dataclass(frozen=True)
class ContextFile:
    """One entry of a build context: from a git blob, or literal bytes we generate."""

    arcname: str
    size: int
    blob: str | None = None
    data: bytes | None = None
    executable: bool = False


@dataclass(frozen=True)
class ImageSpec:
    """An image to build (if missing) and push: a published notebook's or a user server's."""

    image: str  # repository:tag, the tag a hash of everything that goes into it
    context: tuple[ContextFile, ...]
    labels: dict[str, str]  # written in its Dockerfile, so they are part of the content hash
    subject: str  # what progress events are about
    notebook_blob: str | None = None  # checked to be a notebook before any build
    parent: ImageSpec | None = None  # the environment image it is built FROM, ensured first
    push: bool = True  # environments travel inside the images built on them
    # Run after the build, in a container with the build's limits, and committed as the image:
    # the step that runs the repository's code (installing its requirements).
    install: list[str] | None = None


# Bump when a runtime changes what it asks the engine for beyond a Launch's fields (a new
# security option, say): running containers then differ in shape and are replaced.
CONTAINER_SPEC = 1


@dataclass(frozen=True)
class ResourceLimits:
    memory: int
    cpus: float
    pids: int


@dataclass(frozen=True)
class BuildLimits:
    """What one image build may use. Only the install step runs code from a repository; it
    runs in a container held to these."""

    memory: int
    cpus: float
    pids: int
    timeout: float


@dataclass(frozen=True)
class Launch:
    """Everything a runtime needs to start one notebook. Its `shape` is a hash of all of it:
    a running container carries the shape it was started with, so one started under other
    settings (routing, guard, limits, network) or by an earlier version of the gateway is
    replaced, not kept. The container's Jupyter token is not part of it: each runtime draws a
    new one for every container it starts."""

    name: str
    image: str
    labels: Mapping[str, str]
    hostname: str
    network: str
    user: str
    limits: ResourceLimits
    command: list[str] | None = None
    router: str = ""  # its Traefik router, whose last middleware gives Jupyter the token
    volume: str = ""  # a user's work area, mounted at the working directory
    volume_labels: Mapping[str, str] = field(default_factory=dict)
    node: str = ""  # Swarm: the node that holds the volume (not a shape: it is where, not what)
    placement: tuple[str, ...] = ()  # Swarm: the operator's constraints (SWARM_PLACEMENT)
    host: str = ""  # where it answers through Traefik (its routing labels say so too)

    @property
    def shape(self) -> str:
        # The commit is not a shape: a notebook whose content did not change keeps running.
        labels = {k: v for k, v in self.labels.items() if k != naming.LABEL_COMMIT}
        described = {
            "spec": CONTAINER_SPEC,
            "name": self.name,
            "image": self.image,
            "labels": labels,
            "hostname": self.hostname,
            "network": self.network,
            "user": self.user,
            "limits": [self.limits.memory, self.limits.cpus, self.limits.pids],
            "command": self.command,
            "router": self.router,
            **({"volume": self.volume} if self.volume else {}),
            # Moving notebooks elsewhere is a change to apply; none keeps earlier shapes.
            **({"placement": list(self.placement)} if self.placement else {}),
        }
        text = json.dumps(described, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


@dataclass(frozen=True)
class DesiredNotebook:
    """What should run for one notebook, fully determined by the repository at a commit."""

    project: str
    path: str
    commit: str
    content_hash: str
    image: str  # repository:tag
    container: str
    host_label: str
    url: str
    context: tuple[ContextFile, ...]
    launch: Launch
    environment: ImageSpec | None = None
    image_labels: dict[str, str] = field(default_factory=dict)  # in its Dockerfile

    @property
    def key(self) -> str:
        return self.path

    @property
    def spec(self) -> ImageSpec:
        notebook = next(f for f in self.context if f.arcname == f"notebook/{self.path}")
        return ImageSpec(
            self.image, self.context, self.image_labels, self.path, notebook.blob, self.environment
        )


@dataclass(frozen=True)
class ContainerState:
    """How a workload is doing, as the engine (or Swarm) says."""

    status: str  # created, running, restarting, exited, dead, unplaced (Swarm: no node), ...
    running: bool
    exit_code: int
    oom_killed: bool
    restart_count: int  # failed runs since it was started or last updated
    error: str

    def describe(self) -> str:
        if self.status in ("exited", "dead"):
            return f"{self.status} with code {self.exit_code}"
        return self.status


@dataclass(frozen=True)
class Usage:
    """What the engine says a running container uses now (None: it cannot say)."""

    cpu: float | None = None  # cores
    memory: int | None = None  # bytes


@dataclass(frozen=True)
class RunningNotebook:
    """A container the gateway owns, as read back from its labels."""

    id: str
    name: str
    project: str
    path: str
    commit: str
    content_hash: str
    image: str
    url: str
    running: bool
    status: str
    server: str  # the name it is known by; during a hand-over `name` is a passing one
    shape: str = ""  # of the Launch it was started with; none on an earlier version's

    @property
    def key(self) -> str:
        return self.path


@dataclass(frozen=True)
class DesiredServer:
    """What should run for a user's server that runs now: the image it runs, shaped as the
    current settings make it."""

    name: str
    launch: Launch

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True)
class RunningServer:
    """A user server's container, as read back from its labels."""

    id: str
    name: str  # the container's (or service's): a passing one during a hand-over
    server: str
    image: str
    user_id: int
    state: str  # the engine's: created, running, restarting, exited, dead, ...
    shape: str = ""  # of the Launch it was started with; none on an earlier version's

    @property
    def key(self) -> str:
        return self.server

    @property
    def running(self) -> bool:
        return self.state == "running"


def serving(notebooks: Iterable[RunningNotebook]) -> dict[tuple[str, str], RunningNotebook]:
    """The one container that stands for each notebook (project, path). During a hand-over,
    or after one was cut short, a notebook has two: the old version stopped under its name and
    the new one running under a passing name. The running one is the notebook."""
    chosen: dict[tuple[str, str], RunningNotebook] = {}
    for notebook in notebooks:
        key = (notebook.project, notebook.path)
        other = chosen.get(key)
        if other is None or _standing(notebook) > _standing(other):
            chosen[key] = notebook
    return chosen


def _standing(notebook: RunningNotebook) -> tuple[bool, bool]:
    return notebook.running, notebook.name == notebook.server


class NotebookState(enum.StrEnum):
    RUNNING = "running"
    FAILED = "failed"
    REMOVED = "removed"


class NotebookAction(enum.StrEnum):
    BUILT = "built"  # a new image was built and the container (re)started
    RESTARTED = "restarted"  # image existed; the container was (re)created
    UNCHANGED = "unchanged"  # already running this exact content
    REMOVED = "removed"
    NONE = "none"  # failed before anything changed


@dataclass
class NotebookOutcome:
    project: str
    path: str
    state: NotebookState
    action: NotebookAction
    url: str = ""
    image: str = ""
    commit: str = ""
    reason: str = ""  # machine-readable failure kind: build_failed, push_failed, not_ready, ...
    message: str = ""
    log: list[str] = field(default_factory=list)  # build log or container log tail on failure


class Phase(enum.StrEnum):
    WAITING = "waiting"
    FETCHING = "fetching"
    BUILDING = "building"
    PUSHING = "pushing"
    STARTING = "starting"
    READY = "ready"
    REMOVING = "removing"
    PUBLISHING = "publishing"
    FAILED = "failed"
    DONE = "done"


@dataclass(frozen=True)
class ProgressEvent:
    """What the pipeline reports while it works; the job keeps them as its log."""

    phase: Phase
    message: str
    notebook: str | None = None
    output: bool = False  # a line of build or push output rather than a step of the job


Emit = Callable[[ProgressEvent], None]
