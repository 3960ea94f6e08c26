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

from gateway.web.routes import ROUTES
from tests.conftest import Stack, gateway_env, new_instance
from tests.support.engine import remove_instance
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, notebook
from tests.support.process import GatewayProcess
from tests.support.stack import free_port
from tests.support.threaded import ThreadedServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# What the route table documents: the API.
API = {(route.method, route.path) for route in ROUTES if route.operation is not None}
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
    assert len(operations) == len(API)

    seen: Counter[tuple[str, str, int]] = Counter()
    for operation in operations:
        exercise(operation, live, seen)()
    print(sorted(seen.items()))
    # Not only refusals: the strategies reach the operations' real work too.
    assert sum(seen.values()) >= len(API) * 2 * 3
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
    """The route table is the one list: what it documents is in the served document, and
    GET / lists the same API."""
    document = requests.get(f"{live.url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert documented == API
    index = requests.get(live.url, timeout=10).json()
    assert set(index["endpoints"]) == {f"{m} {p}" for m, p in API - {("GET", "/")}} | {
        "GET /openapi.json"
    }
    # Every route of the table is served: none answers as an unknown path would.
    for route in ROUTES:
        path = route.path.replace("{id}", "0" * 32).replace("{name}", "nobody")
        method = "GET" if route.method == "*" else route.method
        answer = requests.request(method, live.url + path, timeout=10, allow_redirects=False)
        assert answer.status_code != 405, (route.method, route.path, answer.text[:200])
        if answer.status_code == 404:  # a route's own answer, not aiohttp's for no route
            assert answer.json()["error"]["message"] != "Not Found", route.path
    unknown = requests.get(f"{live.url}/no-such-route", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "Not Found"
