"""Compare what should run with what runs, and say what to do about it. Pure: no I/O.

One comparison for every workload, published notebooks and users' servers alike: a workload
is kept when it runs, under its name, exactly the desired launch's shape (content, routing,
guard, token, limits, network, placement: what the settings and this version of the gateway
make);
everything else desired is deployed in place of what runs for it; what runs and is no longer
desired (and duplicates) is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from gateway.models import DesiredNotebook, Launch, RunningNotebook


class Desired(Protocol):
    @property
    def key(self) -> str: ...  # what it is for: a notebook's path, a server's name

    @property
    def launch(self) -> Launch: ...


class Actual(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...  # a passing one during a hand-over

    @property
    def shape(self) -> str: ...

    @property
    def running(self) -> bool: ...


D = TypeVar("D", bound=Desired)
A = TypeVar("A", bound=Actual)


@dataclass(frozen=True)
class Deploy(Generic[D, A]):
    desired: D
    replaces: tuple[A, ...]  # removed once the new version answers

    @property
    def may_fall_back(self) -> bool:
        """Whether what it replaces may serve again if the new version fails. One without a
        shape was started by a gateway whose Jupyter answered anyone who reached it: it
        never serves again."""
        return all(old.shape for old in self.replaces)

    @property
    def replaced_ids(self) -> list[str]:
        return [old.id for old in self.replaces]


@dataclass(frozen=True)
class Keep(Generic[D, A]):
    desired: D
    current: A


@dataclass
class Plan(Generic[D, A]):
    keep: list[Keep[D, A]] = field(default_factory=list)
    deploy: list[Deploy[D, A]] = field(default_factory=list)
    remove: list[A] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.deploy or self.remove)


# A project's plan.
PublishPlan = Plan[DesiredNotebook, RunningNotebook]


def make_plan(
    desired: Sequence[D], actual: Sequence[A], *, restart_stopped: bool = True
) -> Plan[D, A]:
    """`restart_stopped`: a stopped workload counts as not what is desired (published
    notebooks). Without it, one shaped as desired is kept however it does (a user's server
    that crashed stays so, and says why, until its user starts it again)."""
    by_key: dict[str, list[A]] = {}
    for workload in actual:
        by_key.setdefault(workload.key, []).append(workload)
    plan: Plan[D, A] = Plan()
    for want in sorted(desired, key=lambda d: d.key):
        current = by_key.pop(want.key, [])
        # The running one first: it is the one to keep among equals.
        candidates = sorted(current, key=lambda c: not c.running)
        match = next(
            (
                c
                for c in candidates
                if (c.running or not restart_stopped)
                and c.name == want.launch.name
                and c.shape == want.launch.shape
            ),
            None,
        )
        if match is None:
            plan.deploy.append(Deploy(want, tuple(current)))
        else:
            plan.keep.append(Keep(want, match))
            plan.remove.extend(c for c in current if c is not match)
    for leftovers in by_key.values():
        plan.remove.extend(leftovers)
    return plan
