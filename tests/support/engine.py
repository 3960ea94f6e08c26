"""The Docker CLI as tests and benchmarks use it: a command's output, and what an instance
owns (and its removal)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from gateway import naming


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def build_image(context: Path, dockerfile: str, image: str, instance: str) -> str:
    """A test's own image, labelled with its instance so that its cleanup removes it; a
    failed build leaves no container behind."""
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    label = f"{naming.LABEL_INSTANCE}={instance}"
    docker("build", "-q", "--force-rm", "--label", label, "-t", image, str(context))
    return image


def owned_containers(instance: str) -> list[str]:
    out = docker("ps", "-aq", "--filter", f"label={naming.LABEL_INSTANCE}={instance}")
    return out.split()


def owned_images(instance: str, kind: str | None = None) -> list[str]:
    filters = ["--filter", f"label={naming.LABEL_INSTANCE}={instance}"]
    if kind:
        filters += ["--filter", f"label={naming.LABEL_KIND}={kind}"]
    out = docker("images", "-q", *filters)
    return sorted(set(out.split()))


def remove_instance(instance: str) -> None:
    """Every service, container, image and volume labelled with the instance."""
    remove_services(instance)
    remove_containers(owned_containers(instance))
    remove_images(owned_images(instance))
    for volume in owned_volumes(instance):
        docker("volume", "rm", "-f", volume, check=False)


def owned_volumes(instance: str) -> list[str]:
    """Users' work areas the instance created (their volumes carry its label)."""
    out = docker("volume", "ls", "-q", "--filter", f"label={naming.LABEL_INSTANCE}={instance}")
    return out.split()


def remove_containers(containers: list[str]) -> None:
    """Remove them and wait until the engine says they are gone. A busy engine removes a few
    containers a second, so hundreds take minutes; a `docker rm` cut short by its timeout
    leaves the rest, which the next round asks for again."""
    deadline = time.monotonic() + 120 + 2 * len(containers)
    while containers:
        left = max(5.0, deadline - time.monotonic())
        with contextlib.suppress(subprocess.TimeoutExpired):
            docker("rm", "-f", "-v", *containers, check=False, timeout=left)
        ids = [f"--filter=id={container}" for container in containers]
        containers = docker("ps", "-aq", "--no-trunc", *ids, check=False).split()
        if containers and time.monotonic() > deadline:
            raise RuntimeError(f"containers still there after removing them: {containers}")


def remove_network(name: str) -> None:
    """Whatever is still attached goes first (only a run's own containers join its
    network); the engine then releases the network a moment after its last endpoint."""
    attached = docker("ps", "-aq", "--no-trunc", "--filter", f"network={name}", check=False)
    remove_containers(attached.split())
    for _ in range(120):
        docker("network", "rm", name, check=False)
        if not docker("network", "ls", "-q", "--filter", f"name=^{name}$", check=False):
            return
        time.sleep(0.5)
    raise RuntimeError(f"network {name} is still in use")


def remove_images(images: list[str]) -> None:
    """The engine refuses to remove an image while a child image exists, even with -f, and
    removes the rest; so remove again while that frees more (environment images last)."""
    while images:
        docker("rmi", "-f", *images, check=False)
        remaining = docker("image", "inspect", "--format", "{{.Id}}", *images, check=False)
        if len(remaining.split()) == len(images):
            return
        images = remaining.split()


def images_of_run(run_id: str) -> list[str]:
    """Images of every instance whose name starts with the run's id."""
    labelled = docker("images", "-q", "--filter", f"label={naming.LABEL_INSTANCE}").split()
    if not labelled:
        return []
    out = docker(
        "image",
        "inspect",
        "--format",
        '{{.Id}} {{index .Config.Labels "' + naming.LABEL_INSTANCE + '"}}',
        *set(labelled),
        check=False,
    )
    return sorted(
        image
        for image, _, instance in (line.partition(" ") for line in out.splitlines())
        if instance.startswith(run_id)
    )


def remove_services(instance: str) -> None:
    """A Swarm restarts the containers of its services: remove the services (when the engine
    is in a Swarm), then wait for their containers to go."""
    services = docker(
        "service", "ls", "-q", "--filter", f"label={naming.LABEL_INSTANCE}={instance}",
        check=False,
    ).split()  # fmt: skip
    if not services:
        return
    docker("service", "rm", *services, check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = docker(
            "ps", "-aq", "--filter", f"label={naming.LABEL_INSTANCE}={instance}",
            "--filter", "label=com.docker.swarm.service.id", check=False,
        )  # fmt: skip
        if not left:
            return
        time.sleep(0.5)
