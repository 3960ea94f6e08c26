"""Compare what should run with what runs, and say what to do about it. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.models import DesiredNotebook, RunningNotebook


@dataclass(frozen=True)
class Deploy:
    desired: DesiredNotebook
    replaces: tuple[RunningNotebook, ...]  # removed once the new image is ready to run


@dataclass(frozen=True)
class Keep:
    desired: DesiredNotebook
    current: RunningNotebook


@dataclass
class Plan:
    keep: list[Keep] = field(default_factory=list)
    deploy: list[Deploy] = field(default_factory=list)
    remove: list[RunningNotebook] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.deploy or self.remove)


def make_plan(desired: list[DesiredNotebook], actual: list[RunningNotebook]) -> Plan:
    """Keep containers that run exactly the desired content, under the desired name, shaped
    as the desired launch (routing, guard, token, limits, network: what the settings and this
    version of the gateway make); deploy everything else; remove containers of notebooks that
    are no longer desired (and duplicates)."""
    by_path: dict[str, list[RunningNotebook]] = {}
    for container in actual:
        by_path.setdefault(container.path, []).append(container)
    plan = Plan()
    for want in sorted(desired, key=lambda d: d.path):
        current = by_path.pop(want.path, [])
        match = next(
            (
                c
                for c in current
                if c.running
                and c.content_hash == want.content_hash
                and c.name == want.container
                and c.shape == want.launch.shape
            ),
            None,
        )
        if match is None:
            plan.deploy.append(Deploy(want, tuple(current)))
        else:
            plan.keep.append(Keep(want, match))
            plan.remove.extend(c for c in current if c is not match)
    for leftovers in by_path.values():
        plan.remove.extend(leftovers)
    return plan
