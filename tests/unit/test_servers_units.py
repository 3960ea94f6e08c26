"""The servers API's pure parts: the state a user sees, the options they may choose, and which
hosts belong to whom."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.adapters.runtime import ContainerState
from gateway.errors import BadRequest
from gateway.models import ServerState
from gateway.schemas import ServerOptionsRequest, ServerRequest, parse
from gateway.services.servers import ServerManager, server_status
from gateway.settings import Settings

SETTINGS = Settings.from_env(
    {
        "AUTH_TOKEN": "t" * 20,
        "GITLAB_REPO_URL": "https://gitlab.example.org/team/nb.git",
        "BASE_DOMAIN": "nb.example.org",
    }
)


def state(**kw: Any) -> ContainerState:
    return ContainerState(
        **{
            "status": "exited",
            "running": False,
            "exit_code": 0,
            "oom_killed": False,
            "restart_count": 0,
            "error": "",
            **kw,
        }
    )


@pytest.mark.parametrize(
    ("recorded", "has_container", "container", "expected"),
    [
        (ServerState.STARTING, False, None, ("starting", "building the image")),
        (ServerState.FAILED, False, None, ("failed", "building the image")),
        (ServerState.RUNNING, True, None, ("running", "")),
        (
            ServerState.RUNNING,
            False,
            None,
            ("failed", "the server's container is gone; start it again"),
        ),
        (
            ServerState.RUNNING,
            True,
            state(oom_killed=True),
            ("failed", "the server ran out of memory (limit 1024 MiB); restart it or ask for more"),
        ),
        (
            ServerState.RUNNING,
            True,
            state(exit_code=3),
            ("failed", "the server stopped unexpectedly (exit code 3)"),
        ),
        (
            ServerState.RUNNING,
            True,
            state(status="restarting", restart_count=2),
            ("starting", "restarting after a crash"),
        ),
    ],
)
def test_what_users_are_told(
    recorded: ServerState,
    has_container: bool,
    container: ContainerState | None,
    expected: tuple[str, str],
) -> None:
    assert server_status(recorded, "building the image", has_container, container, 1024) == expected


def manager() -> ServerManager:
    return ServerManager(SETTINGS, None, None, None, None, None)  # type: ignore[arg-type]


def test_options_have_renkus_shape_and_come_from_configuration() -> None:
    options = manager().options()
    assert options["cpu_request"] == {
        "order": 2,
        "displayName": "Number of CPUs",
        "type": "enum",
        "default": 1.0,
        "options": [0.5, 1.0, 2.0],
    }
    assert options["mem_request"]["options"] == ["1G", "2G", "4G"]
    assert options["defaultUrl"]["default"] == "/lab"


def test_choices_outside_the_options_are_refused_together() -> None:
    assert manager()._choose(ServerOptionsRequest()) == {
        "defaultUrl": "/lab",
        "cpu_request": 1.0,
        "mem_request": "1G",
    }
    with pytest.raises(BadRequest) as raised:
        manager()._choose(
            ServerOptionsRequest(cpu_request=64, mem_request="1T", defaultUrl="/rstudio")
        )
    assert len(raised.value.detail["problems"]) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"namespace": "g", "project": "p", "commit_sha": "abc"},
        {"namespace": "g", "project": "a/b", "commit_sha": "a" * 40},
        {"namespace": "../etc", "project": "p", "commit_sha": "a" * 40},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "notebook": "../x.ipynb"},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "notebook": "/etc/passwd"},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "branch": "-x"},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "image": "evil image"},
        {
            "namespace": "g",
            "project": "p",
            "commit_sha": "a" * 40,
            "serverOptions": {"gpu_request": 1},
        },
    ],
)
def test_malformed_server_requests_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        parse(ServerRequest, body)


async def test_hosts_belong_to_published_notebooks_or_to_recorded_servers() -> None:
    class NoServers:
        async def get_server(self, name: str) -> None:
            return None

    servers = ServerManager(SETTINGS, None, None, None, None, NoServers())  # type: ignore[arg-type]
    assert (await servers.target("intro--climate.nb.example.org")).kind == "published"  # type: ignore[union-attr]
    assert await servers.target("alice-x-12345678-abcdef12.nb.example.org") is None
    assert await servers.target("intro--climate.elsewhere.org") is None
    assert await servers.target("nb.example.org") is None
