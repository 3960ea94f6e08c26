"""Whether the gateway can do its work now: the Docker engine, the registry, the git remote and
Traefik, each asked at once and given a few seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.adapters.git import NotebookRepo
from gateway.adapters.images import DockerEngine
from gateway.adapters.probe import TraefikProbe
from gateway.adapters.registry import RegistryClient
from gateway.errors import GatewayError, ProxyError

CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    seconds: float


class HealthChecks:
    def __init__(
        self,
        docker: DockerEngine,
        registry: RegistryClient | None,
        repo: NotebookRepo,
        probe: TraefikProbe,
        timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self._checks: dict[str, Callable[[], Awaitable[str]]] = {
            "docker": docker.ping,
            "git": lambda: repo.check_remote(timeout),
            "traefik": lambda: _traefik(probe),
        }
        self._unconfigured: dict[str, str] = {}
        if registry is not None:
            self._checks["registry"] = registry.ping
        else:
            self._unconfigured["registry"] = "none configured: images stay on this engine"

    async def run(self) -> dict[str, CheckResult]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._one(self._checks[name]) for name in names))
        found = dict(zip(names, results, strict=True))
        found.update(
            {name: CheckResult(True, text, 0.0) for name, text in self._unconfigured.items()}
        )
        return dict(sorted(found.items()))

    async def _one(self, check: Callable[[], Awaitable[str]]) -> CheckResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                message = await check()
        except TimeoutError:
            return CheckResult(False, f"no answer within {self.timeout:.0f} s", self.timeout)
        except GatewayError as exc:
            return CheckResult(False, exc.message, time.monotonic() - started)
        return CheckResult(True, message, time.monotonic() - started)


async def _traefik(probe: TraefikProbe) -> str:
    if not await probe.reachable():
        raise ProxyError(f"Traefik does not answer at {probe.traefik_url}")
    return f"Traefik answers at {probe.traefik_url}"
