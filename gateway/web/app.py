"""The application factory: the only place where concrete adapters are wired together."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import cache
from typing import Any

import aiodocker
import aiohttp
from aiohttp import web

from gateway.adapters.git import NotebookRepo, ProjectClones
from gateway.adapters.gitlab import GitLabClient
from gateway.adapters.images import DockerEngine
from gateway.adapters.probe import TraefikProbe
from gateway.adapters.registry import RegistryAuth, RegistryClient
from gateway.adapters.runtimes.base import Runtime
from gateway.adapters.runtimes.docker import ContainerIndex, ContainerRuntime
from gateway.adapters.runtimes.index import WorkloadIndex
from gateway.adapters.runtimes.swarm import ServiceIndex, SwarmRuntime
from gateway.adapters.store import Store
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.redact import Redactor
from gateway.services.culler import Culler
from gateway.services.health import HealthChecks
from gateway.services.images import ImageSupply
from gateway.services.pipeline import Pipeline
from gateway.services.publisher import Publisher
from gateway.services.reconciler import reconcile_periodically
from gateway.services.repository import RepositoryIdentity
from gateway.services.rollout import Rollout
from gateway.services.runner import JobRunner
from gateway.services.server_lifecycle import ServerLifecycle
from gateway.services.servers import ServerManager
from gateway.services.status import StatusBoard
from gateway.sessions import Signer
from gateway.settings import (
    CullSettings,
    IdentitySettings,
    ImageSettings,
    PublishSettings,
    RolloutSettings,
    ServerSettings,
    Settings,
)
from gateway.web import openapi
from gateway.web.keys import (
    API_DOCUMENT,
    AUTH_FAILURES,
    DOCKER,
    ENDPOINTS,
    GITLAB,
    HEALTH,
    IDENTITY,
    METRICS,
    RATE_LIMITER,
    REDACT,
    RUNNER,
    RUNTIME,
    SERVERS,
    SETTINGS,
    SIGNER,
    STATUS,
    STORE,
)
from gateway.web.middleware import error_middleware, rate_limit_middleware, request_id_middleware
from gateway.web.routes import ROUTES, endpoints, register

MAX_BODY = 25 * 1024**2  # what GitLab sends a webhook at most; other endpoints take 64 KiB


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[request_id_middleware, error_middleware, rate_limit_middleware],
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[REDACT] = Redactor(settings.secrets())
    app[SIGNER] = Signer(settings.auth_token.get_secret_value())
    if settings.rate_limit:
        app[RATE_LIMITER] = RateLimiter(settings.rate_limit)
    if settings.auth_failure_limit:
        app[AUTH_FAILURES] = RateLimiter(settings.auth_failure_limit)
    app.cleanup_ctx.extend([_gitlab, _docker, _store, _jobs])
    register(app, settings.servers_api_prefix)
    app[ENDPOINTS] = endpoints()
    app[API_DOCUMENT] = _api_document()
    return app


@cache
def _api_document() -> dict[str, Any]:
    return openapi.document(ROUTES)


async def _gitlab(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.gitlab_url:
        yield
        return
    client = GitLabClient(settings.gitlab_url, settings.identity_cache_ttl)
    app[GITLAB] = client
    try:
        yield
    finally:
        client.close()


async def _docker(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = aiodocker.Docker()
    runtime, index = _runtime(settings, client)
    try:
        await runtime.ensure_network(settings.docker_network)
        await index.start()
        app[DOCKER] = DockerEngine(client, settings.instance)
        await app[DOCKER].remove_build_containers()  # of builds a stopped gateway left
        app[RUNTIME] = runtime
        yield
    finally:
        await index.close()
        await client.close()


def _runtime(settings: Settings, client: aiodocker.Docker) -> tuple[Runtime, WorkloadIndex]:
    """The one place that knows where notebooks run."""
    interval = settings.container_resync_interval
    if settings.runtime == "swarm":
        service_index = ServiceIndex(client, settings.instance, interval)
        auth = _registry_auth(settings)
        return SwarmRuntime(client, settings.instance, auth, service_index), service_index
    container_index = ContainerIndex(client, settings.instance, interval)
    return ContainerRuntime(client, settings.instance, container_index), container_index


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = await Store.open(app[SETTINGS].state_dir / "gateway.db")
    app[STORE] = store
    app[SIGNER].revoked.update(await store.revoked_sessions(time.time()))  # logouts hold
    try:
        yield
    finally:
        await store.close()


def _registry_auth(settings: Settings) -> RegistryAuth | None:
    if not (settings.registry_username and settings.registry_password):
        return None
    password = settings.registry_password.get_secret_value()
    return RegistryAuth(settings.registry_server, settings.registry_username, password)


async def _registry(
    settings: Settings, session: aiohttp.ClientSession, docker: DockerEngine
) -> RegistryClient | None:
    if not settings.registry_host:
        return None
    api_url = settings.registry_api_url
    if not api_url and await docker.pushes_without_tls(settings.registry_server):
        # As the engine does: a registry in its insecure-registries speaks plain HTTP.
        api_url = f"http://{settings.registry_server}"
    return RegistryClient(session, settings.registry_server, _registry_auth(settings), api_url)


async def _jobs(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    token = settings.gitlab_access_token
    repo = NotebookRepo(
        settings.repo_url,
        settings.state_dir / "repo.git",
        branch=settings.git_branch,
        token=token.get_secret_value() if token else None,
        timeout=settings.git_timeout,
    )
    async with aiohttp.ClientSession() as session:
        probe = TraefikProbe(session, settings.traefik_url, app[SIGNER])
        registry = await _registry(settings, session, app[DOCKER])
        metrics = app[METRICS]
        images = ImageSupply(settings.section(ImageSettings), app[DOCKER], registry, metrics)
        rollout = Rollout(settings.section(RolloutSettings), app[RUNTIME], probe, metrics)
        publisher = Publisher(
            settings.section(PublishSettings), app[RUNTIME], repo, images, rollout
        )
        pipeline = Pipeline(
            settings.section(PublishSettings),
            app[DOCKER],
            app[RUNTIME],
            repo,
            images,
            publisher,
            app[STORE],
        )
        retention = timedelta(days=settings.job_retention_days)
        runner = JobRunner(app[STORE], pipeline, app[REDACT], retention, metrics)
        app[RUNNER] = runner
        server_settings = settings.section(ServerSettings)
        clones = ProjectClones(settings.state_dir / "servers", settings.git_timeout)
        lifecycle = ServerLifecycle(
            server_settings, app[DOCKER], app[RUNTIME], clones, images, rollout, app[STORE]
        )
        servers = ServerManager(
            server_settings,
            app[DOCKER],
            app[RUNTIME],
            images,
            lifecycle,
            app.get(GITLAB),
            app[STORE],
        )
        app[SERVERS] = servers
        app[HEALTH] = HealthChecks(app[DOCKER], registry, repo, probe)
        app[IDENTITY] = RepositoryIdentity(settings.section(IdentitySettings), app.get(GITLAB))
        app[STATUS] = StatusBoard(app[STORE], app[RUNTIME], repo)
        culler = Culler(
            settings.section(CullSettings), app[STORE], app[RUNTIME], servers, probe, metrics
        )
        await runner.resume()
        await lifecycle.recover()
        loops = []
        if settings.reconcile_interval:
            loops.append(reconcile_periodically(runner, lifecycle, settings.reconcile_interval))
        if culler.enabled:
            loops.append(culler.run_periodically())
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await lifecycle.close()
            await runner.close()
