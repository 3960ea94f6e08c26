"""Desired state: what should run for each notebook of a project at a commit.

Everything here is derived from the repository and the settings alone, including the image tag,
which is a hash of everything that goes into the image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from gateway import naming
from gateway.dockerfile import render_dockerfile, render_env_dockerfile, start_script
from gateway.models import ContextFile, DesiredNotebook, ImageSpec, ProjectSnapshot, RepoFile
from gateway.settings import Settings
from gateway.traefik import guard_labels, router_labels

TAG_LENGTH = 20


def environment(
    settings: Settings,
    repository: str,
    base_image: str,
    base_identity: str,
    requirements: RepoFile | None,
    project: str,
) -> ImageSpec:
    """The environment image (base image, requirements, start script) that a project's images
    are built FROM: a requirements change rebuilds it once; a notebook change leaves it be."""
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
    return ImageSpec(image, context, labels, f"{project} environment", push=False)


def desired_notebooks(
    snapshot: ProjectSnapshot, settings: Settings, base_identity: str
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
    snapshot: ProjectSnapshot, notebook: RepoFile, settings: Settings, env: ImageSpec
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
        notebook_path=notebook.path,
        shared=bool(snapshot.shared),
        labels=image_labels,
    ).encode()
    context = build_context(snapshot, notebook, dockerfile)
    # The environment's tag stands for the base image and the requirements.
    digest = content_hash(context, env.image)
    return DesiredNotebook(
        project=snapshot.name,
        path=notebook.path,
        commit=snapshot.commit,
        content_hash=digest,
        image=f"{names.image_repository}:{digest}",
        container=names.container,
        host_label=names.host_label,
        url=url,
        context=context,
        environment=env,
        image_labels=image_labels,
    )


def container_labels(desired: DesiredNotebook, settings: Settings) -> dict[str, str]:
    host = f"{desired.host_label}.{settings.base_domain}"
    middlewares: tuple[str, ...] = ()
    guard: dict[str, str] = {}
    if settings.protect_published:
        middlewares, guard = guard_labels(settings.instance, forward_auth_url(settings))
    routing = router_labels(
        desired.container, host, settings.traefik_entrypoint, settings.docker_network, middlewares
    )
    return {**desired.labels, **guard, **routing}


def forward_auth_url(settings: Settings) -> str:
    return f"{settings.gateway_internal_url}/auth/forward"


def server_image(
    snapshot: ProjectSnapshot,
    settings: Settings,
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
    labels = {
        naming.LABEL_INSTANCE: settings.instance,
        naming.LABEL_KIND: naming.KIND_USER,
        naming.LABEL_NAMESPACE: namespace,
        naming.LABEL_PROJECT: project,
    }
    dockerfile = render_dockerfile(
        env_image=env.image,
        user=settings.notebook_user,
        notebook_path="",
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
    """The Dockerfile, our start script, and the requirements to install."""
    script = start_script()
    files = [
        ContextFile("Dockerfile", len(dockerfile), data=dockerfile),
        ContextFile(".gateway/start-notebook.py", len(script), data=script),
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
