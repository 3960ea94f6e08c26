"""A Swarm service's state, read from its tasks: only the tasks since its last update count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters.runtimes.swarm import TASKS_SINCE, _time, from_service, task_state

UPDATED = "2026-11-23T10:00:00.5Z"


def service(replicas: int = 1, updated: str = UPDATED) -> dict[str, Any]:
    return {
        "ID": "svc1",
        "CreatedAt": "2026-11-23T09:00:00Z",
        "UpdatedAt": updated,
        "Spec": {
            "Name": "nbgw-a--p",
            "Labels": {"notebook-gateway.instance": "nbgw"},
            "Mode": {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"ContainerSpec": {"Image": "reg:5000/p/a:abc@sha256:" + "0" * 64}},
        },
    }


def task(created: str, state: str, desired: str = "running", code: int = 0) -> dict[str, Any]:
    return {
        "CreatedAt": created,
        "DesiredState": desired,
        "Status": {"State": state, "Err": f"exit {code}" if code else "",
                   "ContainerStatus": {"ExitCode": code}},
    }  # fmt: skip


def test_running_after_an_update_ignores_the_failures_of_the_old_version() -> None:
    tasks = [
        task("2026-11-23T09:30:00Z", "failed", "shutdown", code=1),
        task("2026-11-23T10:00:01.25Z", "running"),
    ]
    state = task_state(service(), tasks)
    assert (state.status, state.running, state.restart_count) == ("running", True, 0)


def test_a_failed_run_counts_as_a_restart_and_says_why() -> None:
    tasks = [
        task("2026-11-23T10:00:01Z", "failed", "shutdown", code=137),
        task("2026-11-23T10:00:03Z", "preparing"),
    ]
    state = task_state(service(), tasks)
    assert (state.status, state.running, state.restart_count) == ("restarting", False, 1)
    assert (state.exit_code, state.error) == (137, "exit 137")


def test_before_its_first_task_runs_it_is_created_and_without_replicas_it_is_stopped() -> None:
    assert task_state(service(), []).status == "created"
    assert task_state(service(), [task("2026-11-23T10:00:01Z", "starting")]).status == "created"
    stopped = task_state(service(replicas=0), [task("2026-11-23T10:00:01Z", "shutdown")])
    assert (stopped.status, stopped.running) == ("exited", False)


def test_a_service_reads_like_a_container_with_the_image_it_was_given() -> None:
    found = from_service(service(), [task("2026-11-23T10:00:01Z", "running")])
    assert (found.id, found.name, found.image) == ("svc1", "nbgw-a--p", "reg:5000/p/a:abc")
    assert found.labels == {"notebook-gateway.instance": "nbgw"}


def _rfc3339_nano(moment: datetime, nanos: int) -> str:
    """As Go writes it: nanoseconds with trailing zeros dropped."""
    fraction = f"{moment.microsecond * 1000 + nanos:09d}".rstrip("0")
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(moments, moments, st.integers(0, 999), st.integers(0, 999))
def test_times_keep_their_order_to_the_microsecond(
    a: datetime, b: datetime, nanos_a: int, nanos_b: int
) -> None:
    parsed_a, parsed_b = _time(_rfc3339_nano(a, nanos_a)), _time(_rfc3339_nano(b, nanos_b))
    assert parsed_a == a and parsed_b == b
    assert (parsed_a < parsed_b) == (a < b)


def test_a_missing_time_is_the_earliest() -> None:
    assert _time("") < _time("2000-01-01T00:00:00Z") - timedelta(days=1)


def test_a_task_no_node_can_take_leaves_it_unplaced_with_the_schedulers_reason() -> None:
    reason = "no suitable node (scheduling constraints not satisfied on 2 nodes)"
    waiting = task("2026-11-23T10:00:02Z", "pending")
    waiting["Status"]["Err"] = reason
    killed = task("2026-11-23T10:00:01Z", "shutdown", desired="shutdown")
    found = task_state(service(), [killed, waiting])
    assert (found.status, found.running, found.error) == ("unplaced", False, reason)
    # Pending without a reason is a task on its way.
    assert task_state(service(), [task("2026-11-23T10:00:02Z", "pending")]).status == "created"


def test_tasks_count_from_the_moment_a_pin_to_their_node_says() -> None:
    """A pin to the task's own node updates the service but leaves the task running."""
    pinned = service(updated="2026-11-23T10:00:05Z")
    pinned["Spec"]["Labels"][TASKS_SINCE] = UPDATED
    running = task("2026-11-23T10:00:01Z", "running")
    assert task_state(pinned, [running]).status == "running"
    # Without the label, the same task predates the update and does not count.
    del pinned["Spec"]["Labels"][TASKS_SINCE]
    assert task_state(pinned, [running]).status == "created"
