"""Everything shared through the application, each under one typed key."""

from typing import Any

from aiohttp import web

from gateway.adapters.gitlab import GitLabClient
from gateway.adapters.images import DockerEngine
from gateway.adapters.runtimes.base import Runtime
from gateway.adapters.store import Store
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.redact import Redactor
from gateway.services.health import HealthChecks
from gateway.services.repository import RepositoryIdentity
from gateway.services.runner import JobRunner
from gateway.services.servers import ServerManager
from gateway.services.status import StatusBoard
from gateway.sessions import Signer
from gateway.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
REDACT = web.AppKey("redact", Redactor)
DOCKER = web.AppKey("docker", DockerEngine)
RUNTIME = web.AppKey("runtime", Runtime)
STORE = web.AppKey("store", Store)
RUNNER = web.AppKey("runner", JobRunner)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
AUTH_FAILURES = web.AppKey("auth_failures", RateLimiter)  # failed credential checks
GITLAB = web.AppKey("gitlab", GitLabClient)
SERVERS = web.AppKey("servers", ServerManager)
SIGNER = web.AppKey("signer", Signer)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", HealthChecks)
STATUS = web.AppKey("status", StatusBoard)
IDENTITY = web.AppKey("identity", RepositoryIdentity)  # the notebooks repository's
ENDPOINTS = web.AppKey("endpoints", list[str])  # the API, as GET / lists it
API_DOCUMENT = web.AppKey("api_document", dict[str, Any])  # the OpenAPI document
