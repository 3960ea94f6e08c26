"""Domain errors. Each carries a machine-readable code and the HTTP status it maps to; one
middleware renders them as {"error": {"code", "message", "detail"}}."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    headers: dict[str, str] = {}  # noqa: RUF012 (read-only default)

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(GatewayError):
    code = "invalid_configuration"


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class RequestTimeout(GatewayError):
    """A body that did not arrive in time; the connection is closed after the answer."""

    status = 408
    code = "request_timeout"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="notebook-gateway"'}  # noqa: RUF012


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(f"too many requests; try again in {seconds} s")
        self.headers = {"Retry-After": str(seconds)}


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    """The thing is in use, or in a state that does not allow this now."""

    status = 409
    code = "conflict"


class Unsatisfiable(GatewayError):
    """A request understood, and impossible here (a GPU, cloud storage): not a typo to fix."""

    status = 422
    code = "unsatisfiable"


class Unavailable(GatewayError):
    status = 503
    code = "unavailable"


class UnknownProject(NotFound):
    code = "unknown_project"


class InvalidRepository(GatewayError):
    """The repository content cannot be turned into images (hostile or oversized files)."""

    status = 422
    code = "invalid_repository"


class DeployFailed(GatewayError):
    """One or more notebooks failed; the detail lists each outcome."""

    status = 422
    code = "deploy_failed"


class UpstreamError(GatewayError):
    """A service the gateway depends on (git remote, registry, Docker engine) failed."""

    status = 502
    code = "upstream_error"


class GitError(UpstreamError):
    code = "git_error"


class RegistryError(UpstreamError):
    code = "registry_error"


class DockerError(UpstreamError):
    code = "docker_error"


class ProxyError(UpstreamError):
    code = "proxy_error"


class PublishError(UpstreamError):
    code = "publish_failed"


class JobFailed(GatewayError):
    """A finished job's recorded error, raised again to answer the request that waited for it."""

    def __init__(self, message: str, code: str, status: int, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.code = code
        self.status = status


class NotebookFailed(Exception):
    """One notebook could not be deployed. The others go on; the job reports it.

    reason is one of: invalid_notebook, build_failed, push_failed, start_failed, not_ready,
    out_of_memory.
    """

    def __init__(self, reason: str, message: str, log: list[str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.log = log or []
