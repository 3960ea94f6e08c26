"""When the culler stops a server, from what Jupyter says about its activity (the activity is
read through Traefik in tests/integration/test_culling.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from gateway.adapters.probe import TraefikProbe
from gateway.metrics import Metrics
from gateway.services.culler import Culler
from gateway.settings import Settings

BASE = {"AUTH_TOKEN": "t0ken-for-tests", "GITLAB_REPO_URL": "file:///tmp/none"}


class Probe:
    def __init__(self, status: dict[str, Any] | None) -> None:
        self.status = status

    async def activity(self, host: str) -> dict[str, Any] | None:
        return self.status


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def culler(status: dict[str, Any] | None, **env: str) -> Culler:
    settings = Settings.from_env({**BASE, **env})
    probe = cast(TraefikProbe, Probe(status))
    return Culler(settings, None, None, None, probe, Metrics())  # type: ignore[arg-type]


# Times are seconds ago, turned into Jupyter's ISO timestamps when the test runs.
@pytest.mark.parametrize(
    ("env", "status", "created_ago", "verdict"),
    [
        ({"CULL_IDLE_TIMEOUT": "60"}, {"last_activity": 61, "started": 99}, 99, "idle"),
        ({"CULL_IDLE_TIMEOUT": "60"}, {"last_activity": 30, "started": 99}, 99, None),
        # Cannot tell: never culled on a guess.
        ({"CULL_IDLE_TIMEOUT": "60"}, None, 99, None),
        ({"CULL_IDLE_TIMEOUT": "60"}, {"last_activity": "garbled"}, 99, None),
        ({"CULL_IDLE_TIMEOUT": "0", "CULL_MAX_AGE": "50"}, {"last_activity": 1}, 51, "max_age"),
        ({"CULL_IDLE_TIMEOUT": "0", "CULL_MAX_AGE": "50"}, None, 51, "max_age"),
        ({"CULL_IDLE_TIMEOUT": "0", "CULL_MAX_AGE": "50"}, {"last_activity": 999}, 49, None),
        # Published notebooks have no record: Jupyter's start time is their age.
        ({"CULL_MAX_AGE": "50"}, {"last_activity": 1, "started": 51}, None, "max_age"),
    ],
)
async def test_verdicts(
    env: dict[str, str],
    status: dict[str, float | str] | None,
    created_ago: float | None,
    verdict: str | None,
) -> None:
    jupyter = None
    if status is not None:
        jupyter = {k: ago(v) if isinstance(v, int) else v for k, v in status.items()}
    created = None if created_ago is None else datetime.now(UTC).timestamp() - created_ago
    found = await culler(jupyter, **env)._verdict("h.example.org", created)
    assert (found[0] if found else None) == verdict, found


def test_culling_is_off_when_both_limits_are() -> None:
    assert not culler(None, CULL_IDLE_TIMEOUT="0", CULL_MAX_AGE="0").enabled
    assert culler(None).enabled  # an hour of idleness, by default
