"""The image registry's own HTTP API (Distribution v2), for what the Docker engine cannot do:
list and delete tags. Pushing goes through the engine."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.errors import RegistryError

TIMEOUT = aiohttp.ClientTimeout(total=30)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
# What a registry (through the Docker engine) says when retrying cannot help.
_PERMANENT = re.compile(
    r"unauthorized|authentication required|incorrect username or password|denied|forbidden"
    r"|\b40[13]\b|manifest invalid|name invalid",
    re.IGNORECASE,
)


def is_transient(message: str) -> bool:
    """Connection refused, timeouts, 5xx: worth retrying. Refused credentials: not."""
    return not _PERMANENT.search(message)


@dataclass(frozen=True)
class RegistryAuth:
    server: str  # host[:port]
    username: str
    password: str

    def header(self) -> dict[str, str]:
        """The credentials as the Docker engine's X-Registry-Auth wants them."""
        return {"username": self.username, "password": self.password, "serveraddress": self.server}


class RegistryClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        server: str,
        auth: RegistryAuth | None,
        api_url: str = "",
    ) -> None:
        self.session = session
        self.server = server
        self.auth = auth
        # Like the Docker engine: loopback registries speak plain HTTP, others HTTPS.
        plain = _is_loopback(registry_hostname(server))
        origin = api_url.rstrip("/") or f"{'http' if plain else 'https'}://{server}"
        self.base = f"{origin}/v2"

    async def has(self, image: str) -> bool:
        """Whether the registry holds image (host/repository:tag); False when it cannot tell."""
        name, _, tag = image.removeprefix(f"{self.server}/").rpartition(":")
        try:
            found = await self._request(
                "HEAD", f"{name}/manifests/{tag}", name, {"Accept": MANIFEST_TYPES}
            )
        except RegistryError:
            return False
        return bool(found["status"] == 200)

    async def ping(self) -> str:
        """Whether the registry answers and, with credentials, accepts them."""
        result = await self._request("GET", "", "")
        if result["status"] != 200:
            raise RegistryError(
                f"registry {self.server} answered {result['status']} to {self.base}/"
            )
        return f"registry {self.server} answers" + (
            " and accepts the credentials" if self.auth else ""
        )

    async def prune(self, repository: str, keep: str | None = None) -> list[str]:
        """Delete every tag of `repository` (a name without the registry host) but `keep`.
        Returns the deleted tags."""
        response = await self._request("GET", f"{repository}/tags/list", repository)
        if response["status"] == 404:
            return []
        tags = response["json"].get("tags") or []
        deleted = []
        for tag in tags:
            if tag == keep:
                continue
            found = await self._request(
                "HEAD", f"{repository}/manifests/{tag}", repository, {"Accept": MANIFEST_TYPES}
            )
            digest = found["headers"].get("Docker-Content-Digest")
            if found["status"] == 404 or not digest:
                continue
            gone = await self._request("DELETE", f"{repository}/manifests/{digest}", repository)
            if gone["status"] == 405:
                raise RegistryError(
                    f"registry {self.server} does not allow deleting images"
                    " (Distribution: set REGISTRY_STORAGE_DELETE_ENABLED=true)"
                )
            deleted.append(tag)
        return deleted

    async def _request(
        self, method: str, path: str, repository: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        url = f"{self.base}/{path}"
        headers = dict(headers or {})
        try:
            result = await self._send(method, url, headers)
            if result["status"] == 401:
                headers["Authorization"] = await self._authorization(
                    result["headers"].get("WWW-Authenticate", ""), repository
                )
                result = await self._send(method, url, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryError(f"registry {self.server} did not answer: {exc}") from None
        if result["status"] >= 400 and result["status"] not in (404, 405):
            raise RegistryError(
                f"registry {self.server} answered {result['status']} to {method} {path}"
            )
        return result

    async def _send(self, method: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
        async with self.session.request(method, url, headers=headers, timeout=TIMEOUT) as response:
            body = await response.json(content_type=None) if method == "GET" else None
            return {"status": response.status, "headers": response.headers, "json": body or {}}

    async def _authorization(self, challenge: str, repository: str) -> str:
        """Answer a Basic or a Bearer (token service, as GitLab's registry uses) challenge."""
        if self.auth is None:
            raise RegistryError(f"registry {self.server} wants credentials; set REGISTRY_USERNAME")
        credentials = f"{self.auth.username}:{self.auth.password}".encode()
        basic = "Basic " + base64.b64encode(credentials).decode()
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            return basic
        if scheme != "bearer":
            raise RegistryError(f"registry {self.server} asks for unsupported auth {scheme!r}")
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if repository:  # the API's base (/v2/) needs no scope
            params.setdefault("scope", f"repository:{repository}:pull,push,delete")
        headers = {"Authorization": basic}
        async with self.session.get(
            realm, params=params, headers=headers, timeout=TIMEOUT
        ) as response:
            if response.status != 200:
                raise RegistryError(
                    f"the token service of {self.server} refused the credentials"
                    f" ({response.status})"
                )
            body = await response.json(content_type=None)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"the token service of {self.server} sent no token")
        return f"Bearer {token}"


def registry_hostname(server: str) -> str:
    """The host of a registry's host[:port]."""
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server
    return host.strip("[]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def speaks_plain_http(config: Mapping[str, Any], server: str, addresses: Sequence[str]) -> bool:
    """Whether a Docker engine with this RegistryConfig (from `GET /info`) talks to the
    registry without TLS, as it decides: the registry listed in insecure-registries by name,
    or one of its addresses in a listed range (loopback is, by default)."""
    listed = (config.get("IndexConfigs") or {}).get(server)
    if listed is not None:
        return not listed.get("Secure", True)
    ranges = [
        ipaddress.ip_network(str(cidr), strict=False)
        for cidr in config.get("InsecureRegistryCIDRs") or []
    ]
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if any(ip.version == r.version and ip in r for r in ranges):
            return True
    return False
