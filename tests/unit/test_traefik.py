import tomllib
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.traefik import (
    guard_labels,
    router_labels,
    static_config,
    token_labels,
    write_static_config,
)


def test_static_config_only_routes_containers_that_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "traefik" / "traefik.toml"
    write_static_config(static_config(network="nbnet", web_address=":8080"), path)
    config = tomllib.loads(path.read_text())
    assert config["providers"]["docker"]["exposedByDefault"] is False
    assert config["providers"]["docker"]["network"] == "nbnet"
    assert config["entryPoints"]["web"]["address"] == ":8080"
    assert config["ping"]["entryPoint"] == "ping"
    # A new container's route must not wait Traefik's default 2 s behind the previous one.
    assert config["providers"]["providersThrottleDuration"] == "200ms"
    assert [p.name for p in path.parent.iterdir()] == ["traefik.toml"]  # no temp file left


def test_router_labels() -> None:
    labels = router_labels("nbgw-a--b", "a--b.example.org", "web", "nbnet")
    assert labels["traefik.enable"] == "true"
    assert labels["traefik.http.routers.nbgw-a--b.rule"] == "Host(`a--b.example.org`)"
    assert labels["traefik.http.services.nbgw-a--b.loadbalancer.server.port"] == "8888"
    assert labels["traefik.docker.network"] == "nbnet"


def test_every_route_ends_in_its_containers_token_after_the_guard() -> None:
    guard, definitions = guard_labels("nbgw", "http://gw:3000/auth/forward?key=k")
    labels = router_labels("nbgw-a--b", "a--b.example.org", "web", "nbnet", guard)
    assert labels["traefik.http.routers.nbgw-a--b.middlewares"] == "nbgw-auth,nbgw-a--b-token"
    assert definitions == {
        "traefik.http.middlewares.nbgw-auth.forwardauth.address": "http://gw:3000/auth/forward?key=k",
        "traefik.http.middlewares.nbgw-auth.forwardauth.trustForwardHeader": "false",
    }
    public = router_labels("nbgw-c--d", "c--d.example.org", "web", "nbnet")
    assert public["traefik.http.routers.nbgw-c--d.middlewares"] == "nbgw-c--d-token"
    # The token replaces whatever Authorization the client sent.
    assert token_labels("nbgw-c--d", "s3cret") == {
        "traefik.http.middlewares.nbgw-c--d-token.headers.customrequestheaders.Authorization": (
            "token s3cret"
        )
    }
    # Headers (tokens, cookies) never reach Traefik's access log.
    config = static_config(network="nbnet")
    assert config["accessLog"]["fields"]["headers"]["defaultMode"] == "drop"
    assert "api" not in config  # no Traefik API or dashboard


def test_cli_writes_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traefik-config", "--network", "n1", "--output", str(tmp_path / "t.toml")]) == 0
    assert (
        tomllib.loads((tmp_path / "t.toml").read_text())["providers"]["docker"]["network"] == "n1"
    )
    assert main(["traefik-config", "--output", "-", "--web-address", ":81"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["entryPoints"]["web"]["address"] == ":81"


def test_the_committed_config_is_what_the_command_writes() -> None:
    committed = Path(__file__).parents[2] / "traefik" / "traefik.toml"
    assert tomllib.loads(committed.read_text()) == static_config(network="notebook-gateway")


def test_swarm_config_uses_the_swarm_provider_and_polls_often(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNTIME", "swarm")
    assert main(["traefik-config", "--network", "nbnet", "--output", "-"]) == 0
    providers = tomllib.loads(capsys.readouterr().out)["providers"]
    assert "docker" not in providers
    assert providers["swarm"]["network"] == "nbnet"
    assert providers["swarm"]["exposedByDefault"] is False
    # The provider polls; at its default of 15 s a new notebook would wait that long.
    assert providers["swarm"]["refreshSeconds"] == "1s"
    assert main(["traefik-config", "--runtime", "docker", "--output", "-"]) == 0
    assert "docker" in tomllib.loads(capsys.readouterr().out)["providers"]


def test_the_swarm_provider_is_told_its_network_under_its_own_name() -> None:
    docker = router_labels("r", "h.example.org", "web", "nbnet")
    swarm = router_labels("r", "h.example.org", "web", "nbnet", provider="swarm")
    assert swarm["traefik.swarm.network"] == "nbnet" and "traefik.docker.network" not in swarm
    assert {k: v for k, v in swarm.items() if "network" not in k} == {
        k: v for k, v in docker.items() if "network" not in k
    }
