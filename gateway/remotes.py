"""Git remotes as GitLab writes them (https://host[:port]/group/project.git,
ssh://git@host/group/project.git and scp-like git@host:group/project.git): one parse for every
question the gateway asks of one. Local remotes (paths, file://) are not GitLab's: no answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_SCP = re.compile(r"[\w.-]+@([\w.-]+):(?!//)(.*)")


@dataclass(frozen=True)
class Remote:
    scheme: str  # http, https, ssh (scp-like ones too) or git
    host: str
    port: int | None
    path: str  # group/project, without slashes around it or .git
    scp: bool = False  # git@host:path, which never has GitLab's sub-path in it

    @property
    def web_origin(self) -> str:
        """Where its GitLab answers on the web: https for ssh remotes (their port is ssh's)."""
        if self.scheme in ("http", "https"):
            return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port else "")
        return f"https://{self.host}" if self.scheme == "ssh" else ""


def parse(url: str) -> Remote | None:
    scp = _SCP.fullmatch(url)
    if scp:
        return Remote("ssh", scp.group(1), None, _clean(scp.group(2)), scp=True)
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ssh", "git") and parts.hostname:
        return Remote(parts.scheme, parts.hostname, parts.port, _clean(parts.path))
    return None


def origin(url: str) -> str:
    """https://gitlab.example.org for a GitLab remote; "" for a local one."""
    remote = parse(url)
    return remote.web_origin if remote else ""


def repository_path(url: str, gitlab_url: str = "") -> str | None:
    """group/project for GitLab remotes, None for local ones. Under a GitLab at a sub-path
    (GITLAB_URL https://host/gitlab), the path below it."""
    remote = parse(url)
    if remote is None:
        return None
    path = remote.path
    prefix = _clean(urlsplit(gitlab_url).path)
    if prefix and not remote.scp and path.startswith(f"{prefix}/"):
        path = path.removeprefix(f"{prefix}/")
    return path or None


def clone_key(url: str) -> str:
    """A clone URL as compared: host and path, lowercase, without scheme, user, port or
    `.git` (GitLab's http and ssh URLs of one project then agree)."""
    remote = parse(url)
    if remote is not None:
        return f"{remote.host}/{remote.path}".lower()
    parts = urlsplit(url)
    return f"{parts.hostname or ''}/{_clean(parts.path)}".lower()


def commit_web_url(url: str) -> str | None:
    """The web page prefix for commits of a GitLab repository, when the URL tells it."""
    remote = parse(url)
    if remote is None or not remote.web_origin or not remote.path:
        return None
    return f"{remote.web_origin}/{remote.path}/-/commit/"


def _clean(path: str) -> str:
    return path.strip("/").removesuffix(".git")
