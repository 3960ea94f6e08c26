"""The gateway's configuration: one frozen object, built from the environment in one place.

Variable names keep those of the original orchestrator (AUTH_TOKEN, HOSTNAME, GITLAB_ACCESS_TOKEN,
GITLAB_REPO_URL, REGISTRY_USERNAME, REGISTRY_PASSWORD, REGISTRY_HOST) so existing `.env` files work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway import remotes
from gateway.errors import ConfigError
from gateway.references import is_branch_name, is_image_reference

# Names and lowercase DNS labels; a Docker image reference is checked loosely (no spaces,
# no control characters, no JSON or shell metacharacters) because it ends up in FROM.
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_INSTANCE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_USER = re.compile(r"^[0-9]+:[0-9]+$")
# What Swarm places by (docs.docker.com/engine/reference/commandline/service_create/#constraint).
_CONSTRAINT = re.compile(
    r"(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[\w.-]+)"
    r"|engine\.labels\.[\w.-]+)\s*(==|!=)\s*[\w.-]+"
)
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_bytes(value: str | int) -> int:
    """'512m', '1g', '1.5GiB' or a plain number of bytes."""
    if isinstance(value, int):
        return value
    match = _MEMORY.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a size such as 512m or 2g")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


class Settings(BaseModel):
    """Validated configuration. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    # Notification API
    auth_token: SecretStr = Field(alias="AUTH_TOKEN")
    gateway_url: str = Field("", alias="GATEWAY_URL")
    gateway_host: str = Field("0.0.0.0", alias="GATEWAY_HOST")
    gateway_port: int = Field(3000, alias="GATEWAY_PORT", ge=1, le=65535)
    webhook_secret: SecretStr | None = Field(None, alias="WEBHOOK_SECRET")
    rate_limit: int = Field(120, alias="RATE_LIMIT", ge=0)  # requests/minute/client; 0: off
    # Failed credential checks (a wrong token, anywhere) per minute per client; 0: off.
    auth_failure_limit: int = Field(30, alias="AUTH_FAILURE_LIMIT", ge=0)
    # Seconds a connection may take to send a request's headers (or sit idle between
    # requests), and a request its body, before the gateway gives up on it.
    http_timeout: float = Field(30.0, alias="HTTP_TIMEOUT", gt=0)
    reconcile_interval: float = Field(300.0, alias="RECONCILE_INTERVAL", ge=0)  # 0: off
    # The in-memory container index follows Docker events; this is its safety-net resync.
    container_resync_interval: float = Field(60.0, alias="CONTAINER_RESYNC_INTERVAL", gt=0)

    # The notebooks repository
    repo_url: str = Field(alias="GITLAB_REPO_URL")
    gitlab_access_token: SecretStr | None = Field(None, alias="GITLAB_ACCESS_TOKEN")
    git_branch: str = Field("", alias="GIT_BRANCH")
    git_bot_name: str = Field("notebook-gateway[bot]", alias="GIT_BOT_NAME")
    git_bot_email: str = Field("", alias="GIT_BOT_EMAIL")
    git_timeout: float = Field(120.0, alias="GIT_TIMEOUT", gt=0)

    # Registry: with no host, images stay on the local engine.
    registry_host: str = Field("", alias="REGISTRY_HOST")
    registry_username: str = Field("", alias="REGISTRY_USERNAME")
    registry_password: SecretStr | None = Field(None, alias="REGISTRY_PASSWORD")
    # Where the gateway itself reaches the registry's API, when that differs from where the
    # engine pushes (a registry on the host's loopback, seen from the gateway's container).
    registry_api_url: str = Field("", alias="REGISTRY_API_URL")

    # Where notebooks run: containers on this engine, or services across a Docker Swarm.
    runtime: Literal["docker", "swarm"] = Field("docker", alias="RUNTIME")
    # Swarm: where notebooks may run, as `docker service create --constraint` takes it.
    swarm_placement: tuple[str, ...] = Field((), alias="SWARM_PLACEMENT")

    # Images and containers
    base_image: str = Field("quay.io/jupyter/base-notebook:latest", alias="BASE_IMAGE")
    notebook_user: str = Field("1000:100", alias="NOTEBOOK_USER")
    docker_network: str = Field("notebook-gateway", alias="DOCKER_NETWORK")
    instance: str = Field("nbgw", alias="GATEWAY_INSTANCE")
    memory_limit: int = Field(parse_bytes("1g"), alias="NOTEBOOK_MEMORY_LIMIT")
    cpu_limit: float = Field(1.0, alias="NOTEBOOK_CPU_LIMIT", gt=0, le=256)
    pids_limit: int = Field(512, alias="NOTEBOOK_PIDS_LIMIT", ge=16, le=1_000_000)
    build_timeout: float = Field(1200.0, alias="BUILD_TIMEOUT", gt=0)
    # The install step of a build (requirements.txt) runs the repository's code: held to these.
    build_memory_limit: int = Field(parse_bytes("2g"), alias="BUILD_MEMORY_LIMIT")
    build_cpu_limit: float = Field(1.0, alias="BUILD_CPU_LIMIT", gt=0, le=256)
    build_pids_limit: int = Field(512, alias="BUILD_PIDS_LIMIT", ge=16, le=1_000_000)
    server_build_timeout: float = Field(600.0, alias="SERVER_BUILD_TIMEOUT", gt=0)
    push_timeout: float = Field(600.0, alias="PUSH_TIMEOUT", gt=0)
    registry_retries: int = Field(4, alias="REGISTRY_RETRIES", ge=1, le=20)
    build_concurrency: int = Field(2, alias="BUILD_CONCURRENCY", ge=1, le=64)
    push_concurrency: int = Field(4, alias="PUSH_CONCURRENCY", ge=1, le=64)
    start_concurrency: int = Field(8, alias="START_CONCURRENCY", ge=1, le=256)
    registry_retry_delay: float = Field(2.0, alias="REGISTRY_RETRY_DELAY", ge=0)
    ready_timeout: float = Field(120.0, alias="NOTEBOOK_READY_TIMEOUT", gt=0)
    max_file_size: int = Field(parse_bytes("100m"), alias="MAX_FILE_SIZE")
    max_context_size: int = Field(parse_bytes("256m"), alias="MAX_CONTEXT_SIZE")
    max_context_files: int = Field(5000, alias="MAX_CONTEXT_FILES", ge=1)

    # Routing: notebooks live at <notebook>--<project>.<BASE_DOMAIN>
    base_domain: str = Field("", alias="BASE_DOMAIN")
    public_scheme: Literal["", "http", "https"] = Field("", alias="PUBLIC_SCHEME")
    public_port: int | None = Field(None, alias="PUBLIC_PORT", ge=1, le=65535)
    traefik_url: str = Field("http://127.0.0.1:80", alias="TRAEFIK_URL")
    traefik_entrypoint: str = Field("web", alias="TRAEFIK_ENTRYPOINT")

    # Servers API: users' own servers, authenticated against GitLab, guarded at the proxy.
    gitlab_url: str = Field("", alias="GITLAB_URL")  # default: origin of GITLAB_REPO_URL
    gateway_internal_url: str = Field("", alias="GATEWAY_INTERNAL_URL")  # Traefik -> gateway
    protect_published: bool = Field(False, alias="PROTECT_PUBLISHED")
    session_ttl: float = Field(12 * 3600.0, alias="SESSION_TTL", gt=0)
    identity_cache_ttl: float = Field(60.0, alias="IDENTITY_CACHE_TTL", ge=0)
    server_cpu_options: tuple[float, ...] = Field((0.5, 1.0, 2.0), alias="SERVER_CPU_OPTIONS")
    server_cpu_default: float = Field(1.0, alias="SERVER_CPU_DEFAULT", gt=0)
    server_memory_options: tuple[str, ...] = Field(
        ("1G", "2G", "4G"), alias="SERVER_MEMORY_OPTIONS"
    )
    server_memory_default: str = Field("1G", alias="SERVER_MEMORY_DEFAULT")
    server_default_urls: tuple[str, ...] = Field(("/lab", "/tree"), alias="SERVER_DEFAULT_URLS")
    allowed_images: tuple[str, ...] = Field((), alias="ALLOWED_IMAGES")  # fnmatch patterns
    max_servers_per_user: int = Field(5, alias="MAX_SERVERS_PER_USER", ge=1)
    # The servers API also under this path (renku's gateway serves it at /api/notebooks).
    servers_api_prefix: str = Field("", alias="SERVERS_API_PREFIX")

    # Local state: the clone cache and the job database.
    state_dir: Path = Field(Path("state"), alias="STATE_DIR")
    job_retention_days: float = Field(30.0, alias="JOB_RETENTION_DAYS", gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", alias="LOG_FORMAT")
    metrics_public: bool = Field(False, alias="METRICS_PUBLIC")  # else /metrics needs AUTH_TOKEN

    # Idle culling of users' servers (0: off), as JupyterHub's idle culler does.
    cull_idle_timeout: float = Field(3600.0, alias="CULL_IDLE_TIMEOUT", ge=0)
    cull_max_age: float = Field(0.0, alias="CULL_MAX_AGE", ge=0)
    cull_interval: float = Field(300.0, alias="CULL_INTERVAL", gt=0)
    cull_published: bool = Field(False, alias="CULL_PUBLISHED")

    @field_validator(
        "memory_limit", "build_memory_limit", "max_file_size", "max_context_size", mode="before"
    )
    @classmethod
    def _size(cls, value: Any) -> int:
        size = parse_bytes(value)
        if size < 64 * 1024**2 and size != 0:
            # Smaller than any Jupyter server can start in; also catches '512' meant as MiB.
            raise ValueError(f"{value!r} is below 64m")
        return size

    @field_validator(
        "server_cpu_options",
        "server_memory_options",
        "server_default_urls",
        "allowed_images",
        "swarm_placement",
        mode="before",
    )
    @classmethod
    def _list(cls, value: Any) -> Any:
        """Comma-separated in the environment."""
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("server_memory_options")
    @classmethod
    def _memory_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            parse_bytes(option)
        return value

    @field_validator("server_default_urls")
    @classmethod
    def _default_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not re.fullmatch(r"/[A-Za-z0-9/_-]*", url):
                raise ValueError(f"{url!r} is not a path such as /lab")
        return value

    @field_validator("servers_api_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        segments = value.split("/")[1:]
        if value and (
            not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value) or {".", ".."} & set(segments)
        ):
            raise ValueError(f"{value!r} is not a path such as /api/notebooks")
        return value

    @field_validator("auth_token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator(
        "gateway_url", "traefik_url", "gitlab_url", "gateway_internal_url", "registry_api_url"
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and (
            urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname
        ):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme in ("http", "https", "ssh", "git"):
            if parts.password:
                raise ValueError(
                    "must not contain a password; put the token in GITLAB_ACCESS_TOKEN"
                )
            return value
        if parts.scheme == "file" or value.startswith("/") or re.match(r"^[\w.-]+@[\w.-]+:", value):
            return value
        raise ValueError(
            f"{value!r} is not a git URL (https://, ssh://, file:// or an absolute path)"
        )

    @field_validator("base_image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not is_image_reference(value):
            raise ValueError(
                f"{value!r} is not an image reference such as quay.io/jupyter/base-notebook"
            )
        return value

    @field_validator("registry_host")
    @classmethod
    def _registry(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        for prefix in ("https://", "http://"):
            value = value.removeprefix(prefix)
        if value and not _REGISTRY.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a registry such as registry.example.com[:port][/path]"
            )
        return value

    @field_validator("notebook_user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.fullmatch(value) or value.split(":")[0] == "0":
            raise ValueError(f"{value!r} must be a non-root numeric uid:gid such as 1000:100")
        return value

    @field_validator("swarm_placement")
    @classmethod
    def _placement(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for constraint in value:
            if not _CONSTRAINT.fullmatch(constraint):
                raise ValueError(
                    f"{constraint!r} is not a Swarm placement constraint such as"
                    " node.role==worker or node.labels.notebooks!=no"
                )
        return tuple(re.sub(r"\s+", "", constraint) for constraint in value)

    @field_validator("docker_network")
    @classmethod
    def _network(cls, value: str) -> str:
        if not _NETWORK.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid Docker network name")
        return value

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        if not _INSTANCE.fullmatch(value):
            raise ValueError("must be 1-12 lowercase letters or digits, starting with a letter")
        return value

    @field_validator("base_domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if value and not _DNS_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a DNS name such as notebooks.example.org")
        return value

    @field_validator("git_branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if value and not is_branch_name(value):
            raise ValueError(f"{value!r} is not a branch name")
        return value

    @model_validator(mode="after")
    def _derived(self) -> Settings:
        # Derived defaults: fill them in once so nothing else needs to know the rules.
        gateway_url = self.gateway_url or f"http://localhost:{self.gateway_port}"
        host = urlsplit(gateway_url).hostname or "localhost"
        updates: dict[str, Any] = {
            "gateway_url": gateway_url,
            "state_dir": self.state_dir.resolve(),
        }
        if not self.base_domain:
            updates["base_domain"] = "localhost" if _is_ip(host) else host
        if not self.public_scheme:
            updates["public_scheme"] = urlsplit(gateway_url).scheme
        if not self.git_bot_email:
            updates["git_bot_email"] = (
                f"notebook-gateway@{updates.get('base_domain', self.base_domain)}"
            )
        if not self.gitlab_url:
            updates["gitlab_url"] = remotes.origin(self.repo_url)
        if not self.gateway_internal_url:
            host = "127.0.0.1" if self.gateway_host in ("0.0.0.0", "::", "") else self.gateway_host
            updates["gateway_internal_url"] = f"http://{host}:{self.gateway_port}"
        if not self.allowed_images:
            registry = [f"{self.registry_host}/*"] if self.registry_host else []
            updates["allowed_images"] = (self.base_image, *registry)
        if self.swarm_placement and self.runtime != "swarm":
            raise ValueError("SWARM_PLACEMENT places Swarm services: it needs RUNTIME=swarm")
        if self.runtime == "swarm" and not self.registry_host:
            raise ValueError(
                "RUNTIME=swarm needs REGISTRY_HOST: Swarm nodes do not share local images and"
                " pull every notebook image from the registry"
            )
        if self.server_cpu_default not in self.server_cpu_options:
            raise ValueError("SERVER_CPU_DEFAULT must be one of SERVER_CPU_OPTIONS")
        if self.server_memory_default not in self.server_memory_options:
            raise ValueError("SERVER_MEMORY_DEFAULT must be one of SERVER_MEMORY_OPTIONS")
        for key, value in updates.items():
            object.__setattr__(self, key, value)
        return self

    def section(self, kind: type[S]) -> S:
        """The settings one service reads: a section is a frozen dataclass whose fields are
        named after the settings (or the derived values below) it takes."""
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

    @property
    def workloads(self) -> WorkloadSettings:
        return self.section(WorkloadSettings)

    @property
    def forward_auth_url(self) -> str:
        """Where Traefik asks the gateway whether a request may reach a guarded host."""
        return f"{self.gateway_internal_url}/auth/forward?key={self.forward_auth_key()}"

    @property
    def registry_server(self) -> str:
        """The registry's host[:port], without the repository path prefix."""
        return self.registry_host.split("/", 1)[0]

    def forward_auth_key(self) -> str:
        """What Traefik's forward-auth requests carry (in the address the routes name), so
        that the gateway answers them only: derived from AUTH_TOKEN, never the token."""
        secret = self.auth_token.get_secret_value().encode()
        return hmac.new(secret, b"notebook-gateway forward-auth", hashlib.sha256).hexdigest()[:32]

    def secrets(self) -> list[str]:
        """Every secret value, for the log redactor."""
        found = [
            self.auth_token,
            self.gitlab_access_token,
            self.registry_password,
            self.webhook_secret,
        ]
        values = [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]
        return [*values, self.forward_auth_key()]  # in every forward-auth request line

    @classmethod
    def from_env(cls, environ: Mapping[str, str], env_file: Path | None = None) -> Settings:
        """Build from a `.env` file (if present) overlaid by the environment; raise ConfigError
        listing every problem at once."""
        values = read_environment(environ, env_file)
        known = {field.alias for field in cls.model_fields.values() if field.alias}
        chosen = {k: v for k, v in values.items() if k in known and v.strip() != ""}
        # Shells and containers set HOSTNAME to a bare host name; only a URL is the legacy setting.
        hostname = values.get("HOSTNAME", "")
        if "GATEWAY_URL" not in chosen and re.match(r"^https?://", hostname):
            chosen["GATEWAY_URL"] = hostname
        problems = []
        if ("REGISTRY_USERNAME" in chosen) != ("REGISTRY_PASSWORD" in chosen):
            problems.append("  - REGISTRY_USERNAME, REGISTRY_PASSWORD: set both or neither")
        try:
            settings = cls.model_validate(chosen)
        except ValidationError as exc:
            problems[:0] = _describe(exc)
        if problems:
            raise ConfigError("invalid configuration:\n" + "\n".join(problems))
        return settings


def read_environment(environ: Mapping[str, str], env_file: Path | None) -> dict[str, str]:
    """The environment over the `.env` file (if there is one): where settings come from."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(environ)
    return values


def _is_ip(host: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", host)) or ":" in host


def _describe(exc: ValidationError) -> list[str]:
    aliases = {name: field.alias for name, field in Settings.model_fields.items()}
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        where = aliases.get(where) or where or "configuration"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        lines.append(f"  - {where}: {message}")
    return lines


# Sections: what each service reads, under the settings' own names (their meaning is above).


@dataclasses.dataclass(frozen=True)
class WorkloadSettings:
    """What shapes a workload (its image names, routing, guard, limits and placement)."""

    instance: str
    registry_host: str
    base_image: str
    notebook_user: str
    docker_network: str
    memory_limit: int
    cpu_limit: float
    pids_limit: int
    swarm_placement: tuple[str, ...]
    base_domain: str
    public_scheme: str
    public_port: int | None
    traefik_entrypoint: str
    protect_published: bool
    forward_auth_url: str
    runtime: Literal["docker", "swarm"]  # whose Traefik provider reads the labels


@dataclasses.dataclass(frozen=True)
class ImageSettings:
    """Image supply: building, pushing and pruning."""

    instance: str
    registry_host: str
    registry_server: str
    build_concurrency: int
    push_concurrency: int
    push_timeout: float
    registry_retries: int
    registry_retry_delay: float


@dataclasses.dataclass(frozen=True)
class RolloutSettings:
    """Starting workloads and proving that they answer."""

    start_concurrency: int
    ready_timeout: float


@dataclasses.dataclass(frozen=True)
class PublishSettings:
    """Applying a project's plan and publishing URL.md."""

    repo_url: str
    base_image: str
    git_bot_name: str
    git_bot_email: str
    traefik_url: str
    build_memory_limit: int
    build_cpu_limit: float
    build_pids_limit: int
    build_timeout: float
    max_file_size: int
    max_context_size: int
    max_context_files: int
    workloads: WorkloadSettings


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Users' servers: what they may ask for, and how they are started."""

    repo_url: str
    git_branch: str
    gitlab_url: str
    gitlab_access_token: SecretStr | None
    base_image: str
    allowed_images: tuple[str, ...]
    registry_host: str
    instance: str
    base_domain: str
    public_scheme: str
    public_port: int | None
    max_servers_per_user: int
    cpu_limit: float
    memory_limit: int
    server_cpu_options: tuple[float, ...]
    server_cpu_default: float
    server_memory_options: tuple[str, ...]
    server_memory_default: str
    server_default_urls: tuple[str, ...]
    build_memory_limit: int
    build_cpu_limit: float
    build_pids_limit: int
    server_build_timeout: float
    max_file_size: int
    max_context_size: int
    max_context_files: int
    workloads: WorkloadSettings


@dataclasses.dataclass(frozen=True)
class IdentitySettings:
    """Which GitLab project the notebooks repository is (for webhooks)."""

    repo_url: str
    gitlab_url: str
    gitlab_access_token: SecretStr | None


@dataclasses.dataclass(frozen=True)
class CullSettings:
    """The idle culler."""

    cull_idle_timeout: float
    cull_max_age: float
    cull_interval: float
    cull_published: bool
    base_domain: str


S = TypeVar(
    "S",
    WorkloadSettings,
    ImageSettings,
    RolloutSettings,
    PublishSettings,
    ServerSettings,
    CullSettings,
    IdentitySettings,
)
