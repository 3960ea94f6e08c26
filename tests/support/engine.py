"""The Docker CLI as tests and benchmarks use it: a command's output, and what an instance
owns (and its removal)."""

from __future__ import annotations

import subprocess

from gateway import naming


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


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
    """Every container and image labelled with the instance."""
    if containers := owned_containers(instance):
        docker("rm", "-f", "-v", *containers, check=False)
    if images := owned_images(instance):
        docker("rmi", "-f", *images, check=False)
