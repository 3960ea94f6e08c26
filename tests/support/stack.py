"""The real registry and Traefik, started for one test session on free loopback ports."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from gateway.traefik import static_config, write_static_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    url: str, accept: set[int], timeout: float, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in accept:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in accept:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not ended within `grace` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class Registry:
    host: str
    username: str
    password: str
    process: subprocess.Popen[bytes]
    root: Path
    log: Path
    binary: str

    @classmethod
    def start(cls, root: Path, address: str = "127.0.0.1") -> Registry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is missing; `make test` installs it")
        root.mkdir(parents=True, exist_ok=True)
        username, password = "ci-pusher", secrets.token_urlsafe(18)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()
        (root / "htpasswd").write_text(f"{username}:{hashed}\n")
        port = free_port()
        (root / "config.yml").write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {address}:{port}\n  secret: {secrets.token_hex(16)}\n"
            "auth:\n  htpasswd:\n    realm: notebook-gateway-tests\n"
            f"    path: {root / 'htpasswd'}\n"
        )
        log = root / "registry.log"
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(f"http://{address}:{port}/v2/", {401}, 30, process, log)
        return cls(f"{address}:{port}", username, password, process, root, log, binary)

    def stop(self) -> None:
        stop(self.process)

    def restart(self) -> None:
        """Start again on the same address, with the same storage and users."""
        self.process = subprocess.Popen(
            [self.binary, "serve", str(self.root / "config.yml")],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(f"http://{self.host}/v2/", {401}, 30, self.process, self.log)

    def tags(self, image: str) -> list[str]:
        """The tags the registry holds for an image's repository (image: host/path[:tag])."""
        repository = image.rpartition(":")[0] if image.count(":") > 1 else image
        path = repository.removeprefix(f"{self.host}/")
        request = urllib.request.Request(f"http://{self.host}/v2/{path}/tags/list")
        credentials = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {credentials}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return sorted(json.load(response).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise


@dataclass
class Traefik:
    web_port: int
    ping_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @classmethod
    def start(cls, root: Path, network: str) -> Traefik:
        binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
        root.mkdir(parents=True, exist_ok=True)
        web_port, ping_port = free_port(), free_port()
        # The configuration our own `traefik-config` produces, with test ports.
        config = static_config(
            network=network,
            web_address=f"127.0.0.1:{web_port}",
            ping_address=f"127.0.0.1:{ping_port}",
        )
        write_static_config(config, root / "traefik.toml")
        log = root / "traefik.log"
        process = subprocess.Popen(
            [binary, f"--configFile={root / 'traefik.toml'}"],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(f"http://127.0.0.1:{ping_port}/ping", {200}, 30, process, log)
        return cls(web_port, ping_port, process, log)


def gateway_environment(
    registry: Registry,
    traefik: Traefik,
    base_image: str,
    network: str,
    repo_url: str,
    state_dir: Path,
    instance: str,
    **overrides: str,
) -> dict[str, str]:
    """A gateway's environment on these parts (the tests' stack, or the benchmark's), as an
    operator would write it: its own instance, domain and state."""
    return {
        "AUTH_TOKEN": secrets.token_urlsafe(24),
        "GITLAB_REPO_URL": repo_url,
        "GIT_BRANCH": "main",
        "REGISTRY_HOST": registry.host,
        "REGISTRY_USERNAME": registry.username,
        "REGISTRY_PASSWORD": registry.password,
        "BASE_IMAGE": base_image,
        "DOCKER_NETWORK": network,
        "GATEWAY_INSTANCE": instance,
        "BASE_DOMAIN": f"{instance}.localhost",
        "PUBLIC_SCHEME": "http",
        "PUBLIC_PORT": str(traefik.web_port),
        "TRAEFIK_URL": traefik.url,
        "STATE_DIR": str(state_dir),
        # Reconcile passes deploy whatever the repository holds; whoever wants them says so.
        "RECONCILE_INTERVAL": "0",
        **overrides,
    }
