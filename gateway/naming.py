"""Every name the gateway derives (hosts, containers, images, routers, labels) is made here.

Names are DNS-safe labels: `[a-z0-9-]`, at most 63 characters, never starting or ending with
`-`, never containing `--` (which separates notebook from project in a host label). A name that
is already such a label is kept as it is; any other name gets a readable slug plus a hash of the
original, so two different names never map to the same label.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

MAX_LABEL = 63
PROJECT_LABEL_MAX = 24
HASH_LENGTH = 8
NOTEBOOK_SUFFIX = ".ipynb"

_CLEAN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

# Labels on containers and images: the source of truth for what the gateway owns.
LABEL_PREFIX = "notebook-gateway."
LABEL_INSTANCE = "notebook-gateway.instance"
LABEL_KIND = "notebook-gateway.kind"
LABEL_PROJECT = "notebook-gateway.project"
LABEL_NOTEBOOK = "notebook-gateway.notebook"
LABEL_COMMIT = "notebook-gateway.commit"
LABEL_CONTENT_HASH = "notebook-gateway.content-hash"
LABEL_URL = "notebook-gateway.url"
# Set on the containers the gateway runs, never on images: the classic builder's intermediate
# containers inherit image labels and must not pass for the gateway's own.
LABEL_CONTAINER = "notebook-gateway.container"
# A hash of everything that shaped the container (see models.Launch.shape).
LABEL_SHAPE = "notebook-gateway.shape"
KIND_PUBLISHED = "published"
KIND_USER = "user"
KIND_ENVIRONMENT = "environment"
KIND_WORK = "work"  # a user's work area for one project (a volume)
# User servers also carry who started them and for what.
LABEL_SERVER = "notebook-gateway.server"
LABEL_USER_ID = "notebook-gateway.user-id"
LABEL_USERNAME = "notebook-gateway.user"
LABEL_NAMESPACE = "notebook-gateway.namespace"
LABEL_BRANCH = "notebook-gateway.branch"


def short_hash(text: str, length: int = HASH_LENGTH) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def slugify(text: str) -> str:
    """Lowercase ASCII words joined by single dashes ('Análise de dados' -> 'analise-de-dados')."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))


def dns_label(text: str, max_length: int = MAX_LABEL) -> str:
    """A DNS label for `text`: itself if already clean and short enough, else slug + hash."""
    if len(text) <= max_length and _CLEAN.fullmatch(text):
        return text
    digest = short_hash(text)
    stem = slugify(text)[: max_length - HASH_LENGTH - 1].strip("-")
    return f"{stem}-{digest}" if stem else digest


def notebook_stem(path: str) -> str:
    """The notebook's path inside its project, without the .ipynb suffix."""
    return path[: -len(NOTEBOOK_SUFFIX)] if path.endswith(NOTEBOOK_SUFFIX) else path


@dataclass(frozen=True)
class NotebookNames:
    """All names of one published notebook, derived from (project, notebook path)."""

    project_label: str
    notebook_label: str
    host_label: str
    container: str
    image_repository: str


def notebook_names(instance: str, image_prefix: str, project: str, path: str) -> NotebookNames:
    project_label = dns_label(project, PROJECT_LABEL_MAX)
    notebook_label = dns_label(notebook_stem(path), MAX_LABEL - 2 - len(project_label))
    host_label = f"{notebook_label}--{project_label}"
    return NotebookNames(
        project_label=project_label,
        notebook_label=notebook_label,
        host_label=host_label,
        container=fit(f"{instance}-{host_label}"),
        image_repository=f"{image_prefix}/{instance}/{project_label}/{notebook_label}",
    )


def server_name(user: str, namespace: str, project: str, branch: str, commit: str) -> str:
    """A user's server for one project at one commit: readable, DNS-safe, never shared by two
    users or two commits, and never containing '--' (so never a published notebook's host)."""
    digest = short_hash("\0".join((user, namespace, project, branch, commit)))
    parts = [slugify(user)[:16].strip("-"), slugify(project)[:20].strip("-"), commit[:8].lower()]
    return "-".join([*(p for p in parts if p), digest])


def work_volume(instance: str, user_id: int, user: str, namespace: str, project: str) -> str:
    """A user's work area for one project, whichever commit or branch their server is at:
    readable, and never shared by two users (their GitLab ids differ) or two projects."""
    digest = short_hash("\0".join((str(user_id), namespace.lower(), project.lower())))
    parts = [slugify(user)[:16].strip("-"), slugify(project)[:20].strip("-")]
    return "-".join([instance, "work", *(p for p in parts if p), digest])


def fit(name: str, max_length: int = MAX_LABEL) -> str:
    """Shorten an already DNS-safe name to max_length, keeping it unique with a hash suffix."""
    if len(name) <= max_length:
        return name
    return f"{name[: max_length - HASH_LENGTH - 1].rstrip('-')}-{short_hash(name)}"


def host_name(host_label: str, base_domain: str) -> str:
    """The host a notebook or server answers at, which Traefik routes and the guard checks."""
    return f"{host_label}.{base_domain}"


def public_url(host_label: str, base_domain: str, scheme: str, port: int | None) -> str:
    default_port = {"http": 80, "https": 443}.get(scheme)
    netloc = host_name(host_label, base_domain)
    if port is not None and port != default_port:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}/"


def image_prefix(registry_host: str) -> str:
    """Images go to the registry when there is one; otherwise they stay local."""
    return registry_host or "notebook-gateway"
