"""Desired state: what should run for each notebook of a project at a commit.

Everything here is derived from the repository and the settings alone, including the image tag,
which is a hash of everything that goes into the image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from gateway import naming
from gateway.models import (
    ContextFile,
    DesiredNotebook,
    DesiredServer,
    ImageSpec,
    Launch,
    ProjectSnapshot,
    RepoFile,
    ResourceLimits,
    RunningServer,
)
from gateway.publish.dockerfile import (
    install_command,
    render_dockerfile,
    render_env_dockerfile,
    start_command,
)
from gateway.records import ServerRecord, ServerState
from gateway.settings import WorkloadSettings, parse_bytes
from gateway.traefik import guard_labels, router_labels

TAG_LENGTH = 20


def environment(
    settings: WorkloadSettings,
    repository: str,
    base_image: str,
    base_identity: str,
    requirements: RepoFile | None,
    project: str,
) -> ImageSpec:
    """The environment image (base image and requirements) that a project's images are built
    FROM: a requirements change rebuilds it once; a notebook change leaves it be."""
    labels = {
        naming.LABEL_INSTANCE: settings.instance,
        naming.LABEL_KIND: naming.KIND_ENVIRONMENT,
        naming.LABEL_PROJECT: project,
    }
    dockerfile = render_env_dockerfile(
        base_image=base_image,
        user=settings.notebook_user,
        requirements=requirements is not None,
        labels=labels,
    ).encode()
    context = tuple(_environment_context(dockerfile, requirements))
    digest = content_hash(context, base_identity)
    # "--" never occurs in a label, so no notebook's repository can be this one.
    image = f"{repository}--env:{digest}"
    install = install_command() if requirements is not None else None
    return ImageSpec(image, context, labels, f"{project} environment", push=False, install=install)


def desired_notebooks(
    snapshot: ProjectSnapshot, settings: WorkloadSettings, base_identity: str
) -> list[DesiredNotebook]:
    prefix = naming.image_prefix(settings.registry_host)
    project_label = naming.dns_label(snapshot.name, naming.PROJECT_LABEL_MAX)
    env = environment(
        settings,
        f"{prefix}/{settings.instance}/{project_label}",
        settings.base_image,
        base_identity,
        snapshot.requirements,
        snapshot.name,
    )
    return [_desired(snapshot, nb, settings, env) for nb in snapshot.notebooks]


def _desired(
    snapshot: ProjectSnapshot, notebook: RepoFile, settings: WorkloadSettings, env: ImageSpec
) -> DesiredNotebook:
    names = naming.notebook_names(
        settings.instance, naming.image_prefix(settings.registry_host), snapshot.name, notebook.path
    )
    url = naming.public_url(
        names.host_label, settings.base_domain, settings.public_scheme, settings.public_port
    )
    # What the image is; which commit and content a container runs is on the container.
    image_labels = {
        naming.LABEL_INSTANCE: settings.instance,
        naming.LABEL_KIND: naming.KIND_PUBLISHED,
        naming.LABEL_PROJECT: snapshot.name,
        naming.LABEL_NOTEBOOK: notebook.path,
        naming.LABEL_URL: url,
    }
    dockerfile = render_dockerfile(
        env_image=env.image,
        user=settings.notebook_user,
        shared=bool(snapshot.shared),
        labels=image_labels,
    ).encode()
    context = build_context(snapshot, notebook, dockerfile)
    # The environment's tag stands for the base image and the requirements.
    digest = content_hash(context, env.image)
    image = f"{names.image_repository}:{digest}"
    labels = {
        **image_labels,
        naming.LABEL_COMMIT: snapshot.commit,
        naming.LABEL_CONTENT_HASH: digest,
        **_routing(names.container, names.host_label, settings, settings.protect_published),
    }
    launch = Launch(
        name=names.container,
        image=image,
        labels=labels,
        hostname=names.host_label,
        network=settings.docker_network,
        user=settings.notebook_user,
        limits=ResourceLimits(settings.memory_limit, settings.cpu_limit, settings.pids_limit),
        command=start_command(notebook.path),
        router=names.container,
        placement=settings.swarm_placement,
        host=naming.host_name(names.host_label, settings.base_domain),
    )
    return DesiredNotebook(
        project=snapshot.name,
        path=notebook.path,
        commit=snapshot.commit,
        content_hash=digest,
        image=image,
        container=names.container,
        host_label=names.host_label,
        url=url,
        context=context,
        launch=launch,
        environment=env,
        image_labels=image_labels,
    )


def server_launch(
    record: ServerRecord,
    image: str,
    settings: WorkloadSettings,
    image_labels: Mapping[str, str],
    node: str = "",
) -> Launch:
    """A user's server: its image, always behind the guard, with the options it was asked
    with, and its work area (on `node`, on a Swarm). It depends on the record, the image and
    the settings alone, so a server whose container was started otherwise is known by its
    shape."""
    container = naming.fit(f"{settings.instance}-{record.name}")
    labels = {
        **image_labels,
        naming.LABEL_COMMIT: record.commit_sha,
        naming.LABEL_CONTENT_HASH: image.rpartition(":")[2],
        naming.LABEL_SERVER: record.name,
        naming.LABEL_USER_ID: str(record.user_id),
        naming.LABEL_USERNAME: record.username,
        naming.LABEL_BRANCH: record.branch,
        naming.LABEL_NOTEBOOK: record.notebook,
        naming.LABEL_URL: record.url,
        **_routing(container, record.name, settings, guarded=True),
    }
    return Launch(
        name=container,
        image=image,
        labels=labels,
        hostname=record.name,
        network=settings.docker_network,
        user=settings.notebook_user,
        limits=ResourceLimits(
            parse_bytes(str(record.options["mem_request"])),
            float(record.options["cpu_request"]),
            settings.pids_limit,
        ),
        command=start_command(record.notebook, str(record.options["defaultUrl"])),
        router=container,
        volume=record.volume,
        volume_labels=work_volume_labels(settings, record) if record.volume else {},
        node=node,
        placement=settings.swarm_placement,
        host=naming.host_name(record.name, settings.base_domain),
    )


def desired_servers(
    records: Iterable[ServerRecord],
    running: Iterable[RunningServer],
    nodes: Mapping[str, str],
    settings: WorkloadSettings,
) -> list[DesiredServer]:
    """What should run for the servers recorded running whose container is there: the image
    each runs now, shaped as the current settings make it (a server is never rebuilt behind
    its user's back). `nodes`: the node that holds each work area (Swarm)."""
    # The running container last, so that its image is the one kept for its server.
    images = {c.server: c.image for c in sorted(running, key=lambda c: c.running)}
    desired = []
    for record in records:
        if record.state is not ServerState.RUNNING or record.name not in images:
            continue
        labels = server_image_labels(settings, record.namespace, record.project)
        # As it was asked for: an engine may add the digest it resolved the tag to.
        image = images[record.name].partition("@")[0]
        launch = server_launch(record, image, settings, labels, nodes.get(record.volume, ""))
        desired.append(DesiredServer(record.name, launch))
    return desired


def work_volume_labels(settings: WorkloadSettings, record: ServerRecord) -> dict[str, str]:
    """Whose work area a volume is, for `docker volume ls` on any node."""
    return {
        naming.LABEL_INSTANCE: settings.instance,
        naming.LABEL_KIND: naming.KIND_WORK,
        naming.LABEL_USER_ID: str(record.user_id),
        naming.LABEL_USERNAME: record.username,
        naming.LABEL_NAMESPACE: record.namespace,
        naming.LABEL_PROJECT: record.project,
    }


def server_image_labels(settings: WorkloadSettings, namespace: str, project: str) -> dict[str, str]:
    """What a user server's image is (written in its Dockerfile)."""
    return {
        naming.LABEL_INSTANCE: settings.instance,
        naming.LABEL_KIND: naming.KIND_USER,
        naming.LABEL_NAMESPACE: namespace,
        naming.LABEL_PROJECT: project,
    }


def _routing(
    router: str, host_label: str, settings: WorkloadSettings, guarded: bool
) -> dict[str, str]:
    """Traefik's labels: the route to the container, behind the gateway's guard if `guarded`,
    and always ending in the middleware that gives Jupyter its token."""
    middlewares: tuple[str, ...] = ()
    guard: dict[str, str] = {}
    if guarded:
        middlewares, guard = guard_labels(settings.instance, settings.forward_auth_url)
    host = naming.host_name(host_label, settings.base_domain)
    routing = router_labels(
        router,
        host,
        settings.traefik_entrypoint,
        settings.docker_network,
        middlewares,
        provider=settings.runtime,
    )
    return {**guard, **routing}


def server_image(
    snapshot: ProjectSnapshot,
    settings: WorkloadSettings,
    base_image: str,
    base_identity: str,
    namespace: str,
    project: str,
) -> ImageSpec:
    """A user server's image: the whole repository at a commit, on the environment its
    requirements.txt makes of `base_image`. It does not depend on who starts it or which
    notebook they open, so users at one commit share it."""
    prefix = naming.image_prefix(settings.registry_host)
    repository = (
        f"{prefix}/{settings.instance}/servers/{naming.dns_label(f'{namespace}/{project}')}"
    )
    env = environment(
        settings,
        repository,
        base_image,
        base_identity,
        snapshot.requirements,
        f"{namespace}/{project}",
    )
    everything = sorted((*snapshot.shared, *snapshot.notebooks), key=lambda f: f.path)
    labels = server_image_labels(settings, namespace, project)
    dockerfile = render_dockerfile(
        env_image=env.image,
        user=settings.notebook_user,
        shared=bool(everything),
        labels=labels,
        notebook=False,
    ).encode()
    context = tuple(_files_context(dockerfile, everything))
    digest = content_hash(context, env.image)
    return ImageSpec(
        f"{repository}:{digest}", context, labels, f"{namespace}/{project}", parent=env
    )


def build_context(
    snapshot: ProjectSnapshot, notebook: RepoFile, dockerfile: bytes
) -> tuple[ContextFile, ...]:
    """Only what the image needs on top of its environment: the project's shared files and this
    notebook."""
    files = _files_context(dockerfile, snapshot.shared)
    files.append(
        ContextFile(
            f"notebook/{notebook.path}",
            notebook.size,
            blob=notebook.blob,
            executable=notebook.executable,
        )
    )
    return tuple(files)


def _environment_context(dockerfile: bytes, requirements: RepoFile | None) -> list[ContextFile]:
    """The Dockerfile, an empty work area (copied as the notebook user's) and the
    requirements to install."""
    files = [
        ContextFile("Dockerfile", len(dockerfile), data=dockerfile),
        ContextFile(".gateway/workdir/", 0, data=b""),
    ]
    if requirements is not None:
        files.append(
            ContextFile(".gateway/requirements.txt", requirements.size, blob=requirements.blob)
        )
    return files


def _files_context(dockerfile: bytes, shared: Iterable[RepoFile]) -> list[ContextFile]:
    """The Dockerfile and `shared` under shared/."""
    return [ContextFile("Dockerfile", len(dockerfile), data=dockerfile)] + [
        ContextFile(f"shared/{f.path}", f.size, blob=f.blob, executable=f.executable)
        for f in shared
    ]


def content_hash(context: tuple[ContextFile, ...], base_identity: str) -> str:
    """A hash of every input of the image. Git blob ids already identify file contents,
    so nothing has to be read to compute it."""
    digest = hashlib.sha256(f"base {base_identity}\n".encode())
    for entry in sorted(context, key=lambda f: f.arcname):
        ident = entry.blob or hashlib.sha256(entry.data or b"").hexdigest()
        mode = "x" if entry.executable else "-"
        digest.update(f"{entry.arcname}\0{mode}\0{ident}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:TAG_LENGTH]
