from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.settings import Settings, parse_bytes

REQUIRED = {
    "AUTH_TOKEN": "s3cret-token-value",
    "GITLAB_REPO_URL": "https://gitlab.example.org/team/nb.git",
}


def test_defaults_keep_the_original_orchestrator_behaviour() -> None:
    settings = Settings.from_env(REQUIRED)
    assert settings.gateway_port == 3000
    assert settings.registry_host == ""  # images stay local
    assert settings.base_domain == "localhost"
    assert (
        settings.memory_limit == 2**30 and settings.cpu_limit == 1.0 and settings.pids_limit == 512
    )
    assert settings.state_dir.is_absolute()


def test_every_problem_is_reported_at_once() -> None:
    env = {
        "GITLAB_REPO_URL": "https://user:pw@gitlab.example.org/x.git",
        "BASE_IMAGE": "bad image",
        "NOTEBOOK_MEMORY_LIMIT": "lots",
        "GATEWAY_PORT": "99999",
        "NOTEBOOK_USER": "0:0",
        "REGISTRY_USERNAME": "ci",
    }
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    for name in (
        "AUTH_TOKEN",
        "GITLAB_REPO_URL",
        "BASE_IMAGE",
        "NOTEBOOK_MEMORY_LIMIT",
        "GATEWAY_PORT",
        "NOTEBOOK_USER",
        "REGISTRY_PASSWORD",
    ):
        assert name in message, name
    assert "pw" not in message.replace("password", "")


def test_values_with_a_trailing_newline_are_refused() -> None:
    # .env files and `export X="$(cmd)"` can leave a newline behind; it must not reach a label.
    env = {
        **REQUIRED,
        "BASE_IMAGE": "base:1\n",
        "NOTEBOOK_USER": "1000:100\n",
        "GATEWAY_INSTANCE": "nbgw\n",
    }
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    for name in ("BASE_IMAGE", "NOTEBOOK_USER", "GATEWAY_INSTANCE"):
        assert name in str(raised.value), name


def test_hostname_counts_only_when_it_is_a_url() -> None:
    # Shells and containers set HOSTNAME to a bare name; that is not the gateway's URL.
    assert (
        Settings.from_env({**REQUIRED, "HOSTNAME": "d41f2c"}).gateway_url == "http://localhost:3000"
    )
    legacy = Settings.from_env({**REQUIRED, "HOSTNAME": "https://outreach.example.org"})
    assert legacy.gateway_url == "https://outreach.example.org"
    assert legacy.base_domain == "outreach.example.org" and legacy.public_scheme == "https"
    both = Settings.from_env(
        {**REQUIRED, "HOSTNAME": "https://a.example.org", "GATEWAY_URL": "https://b.example.org"}
    )
    assert both.gateway_url == "https://b.example.org"


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "AUTH_TOKEN=from-file-token\nBASE_DOMAIN=file.example.org\nGITLAB_REPO_URL=/srv/nb.git\n"
    )
    settings = Settings.from_env({"BASE_DOMAIN": "env.example.org"}, env_file)
    assert settings.auth_token.get_secret_value() == "from-file-token"
    assert settings.base_domain == "env.example.org"


def test_secrets_do_not_show_in_repr() -> None:
    settings = Settings.from_env(
        {
            **REQUIRED,
            "REGISTRY_HOST": "r.example.org",
            "REGISTRY_USERNAME": "u",
            "REGISTRY_PASSWORD": "registry-pw",
        }
    )
    assert "registry-pw" not in repr(settings) and "s3cret" not in repr(settings)
    # The forward-auth key, derived from AUTH_TOKEN, is masked too (it is in request lines).
    key = settings.forward_auth_key()
    assert set(settings.secrets()) == {"s3cret-token-value", "registry-pw", key}
    assert "s3cret" not in key and len(key) == 32
    assert settings.registry_server == "r.example.org"


def test_registry_host_may_carry_a_path_and_a_scheme() -> None:
    settings = Settings.from_env(
        {**REQUIRED, "REGISTRY_HOST": "https://registry.example.org:5000/team/"}
    )
    assert settings.registry_host == "registry.example.org:5000/team"
    assert settings.registry_server == "registry.example.org:5000"


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 * 2**20), ("2g", 2 * 2**30), ("1.5GiB", int(1.5 * 2**30)), ("1048576", 2**20)],
)
def test_parse_bytes(text: str, size: int) -> None:
    assert parse_bytes(text) == size


def test_serve_refuses_to_start_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AUTH_TOKEN", "GITLAB_REPO_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--env-file", str(tmp_path / "missing.env")]) == 2
    err = capsys.readouterr().err
    assert (
        "invalid configuration" in err
        and "AUTH_TOKEN: is required" in err
        and "GITLAB_REPO_URL: is required" in err
    )


def test_serve_without_a_docker_engine_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        **REQUIRED,
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "STATE_DIR": str(tmp_path / "state"),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "39999",  # never bound: start-up stops before listening
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--env-file", str(tmp_path / "none.env")]) == 1
    err = capsys.readouterr().err
    assert "cannot start" in err and "no-docker.sock" in err
    assert "s3cret-token-value" not in err


def test_swarm_needs_a_registry_and_says_why() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**REQUIRED, "RUNTIME": "swarm"})
    assert "REGISTRY_HOST" in str(raised.value) and "pull" in str(raised.value)
    with pytest.raises(ConfigError, match="RUNTIME"):
        Settings.from_env({**REQUIRED, "RUNTIME": "kubernetes"})
    swarm = Settings.from_env({**REQUIRED, "RUNTIME": "swarm", "REGISTRY_HOST": "reg:5000"})
    assert swarm.runtime == "swarm" and Settings.from_env(REQUIRED).runtime == "docker"


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## API")]
    missing = [
        field.alias
        for field in Settings.model_fields.values()
        if field.alias and f"`{field.alias}`" not in table
    ]
    assert not missing, f"settings missing from the README's Configuration table: {missing}"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("", ""), ("/api/notebooks", "/api/notebooks"), ("/api/notebooks/", "/api/notebooks")],
)
def test_the_servers_api_prefix_is_a_path(prefix: str, expected: str) -> None:
    settings = Settings.from_env({**REQUIRED, "SERVERS_API_PREFIX": prefix})
    assert settings.servers_api_prefix == expected


@pytest.mark.parametrize(
    "prefix", ["api", "/api//x", "/a b", "/..", "/api/./x", "/x?y", "https://x/api"]
)
def test_a_prefix_that_is_not_a_path_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**REQUIRED, "SERVERS_API_PREFIX": prefix})
    assert "SERVERS_API_PREFIX" in str(raised.value)


def test_swarm_placement_takes_swarm_constraints_and_only_for_swarm() -> None:
    swarm = {**REQUIRED, "RUNTIME": "swarm", "REGISTRY_HOST": "reg:5000"}
    settings = Settings.from_env(
        {**swarm, "SWARM_PLACEMENT": "node.role == worker, node.labels.notebooks!=no"}
    )
    assert settings.swarm_placement == ("node.role==worker", "node.labels.notebooks!=no")
    for wrong in ("node.role=worker", "role==worker", "node.role==", "node.role==a b"):
        with pytest.raises(ConfigError) as raised:
            Settings.from_env({**swarm, "SWARM_PLACEMENT": wrong})
        assert "SWARM_PLACEMENT" in str(raised.value) and "constraint" in str(raised.value)
    with pytest.raises(ConfigError, match="RUNTIME=swarm"):
        Settings.from_env({**REQUIRED, "SWARM_PLACEMENT": "node.role==worker"})
