"""The servers API's pure parts: the state a user sees, the options they may choose, and which
hosts belong to whom."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest, Unsatisfiable
from gateway.models import ContainerState
from gateway.records import ServerState
from gateway.schemas import ServerRequest, parse
from gateway.servers.policy import choose, notebook_host, options, server_status
from gateway.settings import ServerSettings, Settings

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
        (
            ServerState.RUNNING,
            True,
            state(status="unplaced", error="no suitable node (1 node not available)"),
            ("failed", "no node can run the server now: no suitable node (1 node not available)"),
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


SERVERS = SETTINGS.section(ServerSettings)


def test_options_have_renkus_shape_and_come_from_configuration() -> None:
    offered = options(SERVERS).model_dump()
    assert offered["cpu_request"] == {
        "order": 2,
        "displayName": "Number of CPUs",
        "type": "enum",
        "default": 1.0,
        "options": [0.5, 1.0, 2.0],
    }
    assert offered["mem_request"]["options"] == ["1G", "2G", "4G"]
    assert offered["defaultUrl"]["default"] == "/lab"


def request(**options: Any) -> ServerRequest:
    body = {"namespace": "g", "project": "p", "commit_sha": "a" * 40, **options}
    return parse(ServerRequest, body)


def test_choices_outside_the_options_are_refused_together() -> None:
    assert choose(SERVERS, request()) == (
        {"defaultUrl": "/lab", "cpu_request": 1.0, "mem_request": "1G"},
        [],
    )
    with pytest.raises(BadRequest) as raised:
        choose(
            SERVERS,
            request(serverOptions={"cpu_request": 64, "mem_request": "1T", "defaultUrl": "/r"}),
        )
    assert len(raised.value.detail["problems"]) == 3


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"cpu_request": "500m", "mem_request": "2048M"}, (0.5, "2G")),
        ({"cpu_request": "2", "mem_request": "4G"}, (2.0, "4G")),
        ({"cpu_request": 1}, (1.0, "1G")),
    ],
)
def test_renkus_ways_of_writing_options_mean_the_listed_ones(
    options: dict[str, Any], expected: tuple[float, str]
) -> None:
    chosen, _ = choose(SERVERS, request(serverOptions=options))
    assert (chosen["cpu_request"], chosen["mem_request"]) == expected


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        ({"serverOptions": {"gpu_request": 1}}, "gpu_request"),
        ({"environment_variables": {"A": "1"}}, "environment_variables"),
        ({"cloudstorage": [{"bucket": "b"}]}, "cloudstorage"),
        ({"user_secrets": {"mount_path": "/s"}}, "user_secrets"),
    ],
)
def test_what_cannot_be_had_here_is_refused_as_unsatisfiable(
    body: dict[str, Any], refused: str
) -> None:
    with pytest.raises(Unsatisfiable) as raised:
        choose(SERVERS, request(**body))
    assert raised.value.status == 422
    assert refused in raised.value.message


@pytest.mark.parametrize(
    ("body", "warned"),
    [
        ({"serverOptions": {"gpu_request": 0, "disk_request": "1G"}}, "disk_request"),
        ({"serverOptions": {"lfs_auto_fetch": True}}, "lfs_auto_fetch"),
        ({"lfs_auto_fetch": True}, "lfs_auto_fetch"),
        ({"storage": 2}, "storage"),
        ({"resource_class_id": 3}, "resource_class_id"),
    ],
)
def test_what_means_nothing_here_is_ignored_with_a_warning(
    body: dict[str, Any], warned: str
) -> None:
    chosen, warnings = choose(SERVERS, request(**body))
    assert chosen["cpu_request"] == 1.0
    assert len(warnings) == 1 and warned in warnings[0]


@pytest.mark.parametrize(
    "body",
    [
        {"namespace": "g", "project": "p", "commit_sha": "abc"},  # shorter than git allows
        {"namespace": "g", "project": "a/b", "commit_sha": "a" * 40},
        {"namespace": "../etc", "project": "p", "commit_sha": "a" * 40},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "notebook": "../x.ipynb"},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "notebook": "/etc/passwd"},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "branch": "-x"},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "image": "evil image"},
        {"namespace": "g", "project": "p", "commit_sha": "abcg"},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 41},
        {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "serverOptions": {"x": 1}},
        {
            "namespace": "g",
            "project": "p",
            "commit_sha": "a" * 40,
            "serverOptions": {"cpu_request": "lots"},
        },
    ],
)
def test_malformed_server_requests_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        parse(ServerRequest, body)


@pytest.mark.parametrize(
    ("host", "label"),
    [
        ("intro--climate.nb.example.org", "intro--climate"),
        ("Alice-x-12345678-abcdef12.NB.example.org", "alice-x-12345678-abcdef12"),
        ("intro--climate.elsewhere.org", None),
        ("nb.example.org", None),
        ("x.y.nb.example.org", None),
    ],
)
def test_only_hosts_right_under_the_domain_may_be_notebooks(host: str, label: str | None) -> None:
    assert notebook_host(host, "nb.example.org") == label
