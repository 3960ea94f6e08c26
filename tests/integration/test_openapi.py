"""Schemathesis against the OpenAPI document the live gateway serves: no 5xx, every answer as
documented, and unauthenticated calls refused."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Stack, gateway_env, new_instance
from tests.support.engine import remove_instance
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, notebook
from tests.support.process import GatewayProcess
from tests.support.stack import free_port
from tests.support.threaded import ThreadedServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Live:
    url: str
    admin: str
    user: str


@pytest.fixture(scope="module")
def live(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("openapi")
    lab = GitLab(root / "gitlab")
    alice = lab.user("alice", "glpat-alice-" + secrets.token_hex(8))
    lab.project("group/analysis", {alice: DEVELOPER}).remote.commit({"a.ipynb": notebook("1")})
    gitlab = ThreadedServer(lab.app())
    gitlab_url = gitlab.start()
    remote = GitRemote(root / "notebooks")
    remote.commit({"README.md": b"no projects: reconcile passes stay cheap\n"})
    instance = new_instance(stack)
    env = gateway_env(
        stack, remote, root / "state", instance,
        GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(free_port()), GITLAB_URL=gitlab_url,
        RATE_LIMIT="0", AUTH_FAILURE_LIMIT="0", WEBHOOK_SECRET="hook-" + secrets.token_hex(8),
    )  # fmt: skip
    gateway = GatewayProcess(env, root / "gateway.log")
    gateway.start()
    try:
        asyncio.run(gateway.healthy())
        yield Live(gateway.url, env["AUTH_TOKEN"], alice.token)
    finally:
        gateway.stop()
        gitlab.stop()
        remove_instance(instance)
        log = (root / "gateway.log").read_text()
        assert "Traceback" not in log, log[-5000:]


def test_the_api_does_what_its_document_says(live: Live) -> None:
    """Every operation of the served document, through Hypothesis strategies schemathesis
    derives from it, as the admin, as a GitLab user, and without credentials."""
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document is invalid: {result.err()}"
        operations.append(result.ok())
    assert len(operations) == 20

    seen: Counter[tuple[str, str, int]] = Counter()
    for operation in operations:
        exercise(operation, live, seen)()
    print(sorted(seen.items()))
    # Not only refusals: the strategies reach the operations' real work too.
    assert sum(seen.values()) >= 20 * 2 * 3
    assert {status for (_, _, status) in seen} >= {200, 400, 401, 404}


def exercise(operation: Any, live: Live, seen: Counter[tuple[str, str, int]]) -> Callable[[], None]:
    """A Hypothesis test of one operation (a factory, so each binds its own operation)."""
    secured = bool(operation.definition.raw.get("security"))

    @given(case=operation.as_strategy())
    @settings(
        max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def run(case: schemathesis.Case[Any]) -> None:
        for token in (live.admin, live.user):
            answer = case.call_and_validate(
                base_url=live.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
            )
            seen[(case.method, case.path, answer.status_code)] += 1
        answer = case.call(base_url=live.url)
        where = (case.method, case.path, answer.status_code, answer.text[:300])
        assert answer.status_code < 500, where
        if secured:
            assert answer.status_code == 401, where

    return run


def test_the_document_is_served_and_describes_every_route(live: Live) -> None:
    document = requests.get(f"{live.url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    expected = {
        ("GET", "/"), ("GET", "/health"), ("POST", "/projects"), ("DELETE", "/projects"),
        ("POST", "/reconcile"), ("POST", "/hooks/gitlab"), ("GET", "/jobs"), ("GET", "/jobs/{id}"),
        ("GET", "/jobs/{id}/events"), ("GET", "/status"), ("GET", "/metrics"),
        ("GET", "/servers"), ("POST", "/servers"), ("GET", "/servers/{name}"),
        ("DELETE", "/servers/{name}"), ("GET", "/server_options"), ("GET", "/logs/{name}"),
        ("GET", "/images"), ("GET", "/volumes"), ("DELETE", "/volumes/{name}"),
    }  # fmt: skip
    assert documented == expected
