"""notebook-gateway against what it replaces, side by side, on the local stack (`make benchmark`).

P1  no-change update of 50 notebooks in 5 projects, against a shell loop of `docker build`
    that hits the cache for the same 50 notebooks (the original orchestrator's Dockerfile).
P2  cold deploy of 20 notebooks sharing one requirements.txt, against a shell script doing what
    the original orchestrator does: `docker build`, `docker push`, `docker run` per notebook.
    Two figures: until every notebook answers through Traefik (what readers see; the baseline
    ends there too), and P2j until the notification's answer (our pushes included).
P3  one changed notebook, from the notification to its URL answering with the new version
    through Traefik, against `docker run` of the same image until Jupyter answers (the floor).
P4  median latency of GET /servers with 200 running servers, against the engine's own
    label-filtered container list; and the gateway's peak memory over the whole run.

Every figure is printed as a ratio next to its goal. A benchmark is not a test: it asserts
nothing about time, but it does check that both sides did the work they are timed for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from gateway import naming
from gateway.adapters.store import Store
from gateway.publish.dockerfile import WORKDIR, start_command
from gateway.records import ServerRecord, ServerState
from tests.support.engine import (
    docker,
    images_of_run,
    remove_images,
    remove_instance,
    remove_network,
)
from tests.support.gitrepo import GitRemote, notebook
from tests.support.http import job_finished, until, until_answers
from tests.support.process import GatewayProcess
from tests.support.stack import Registry, Traefik, free_port, gateway_environment, stop

BASE_IMAGE = os.environ.get("BENCH_BASE_IMAGE", "notebook-gateway/base:latest")
POLL = 0.02  # both sides look for an answer this often
# How long one look may take: a request that Traefik sends to a container that has just gone
# waits for a connection that never comes; like a user, the poller gives up and asks again.
PATIENCE = aiohttp.ClientTimeout(total=1)


@dataclass
class Figure:
    name: str
    what: str
    ours: float
    baseline: float
    goal: float
    unit: str = "s"

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline

    @property
    def met(self) -> bool:
        return self.ratio <= self.goal


@dataclass
class Lab:
    """The registry, Traefik, network and gateways of one benchmark run, and their cleanup."""

    root: Path
    run_id: str = field(default_factory=lambda: "b" + secrets.token_hex(3))
    traefik: Traefik | None = None
    registries: list[Registry] = field(default_factory=list)
    gateways: list[GatewayProcess] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    peak_memory: dict[str, int] = field(default_factory=dict)  # scenario -> bytes
    trace: bool = False  # print where the time of each P2 and P3 run went
    only: set[str] = field(default_factory=lambda: {"P1", "P2", "P3", "P4"})
    figures: list[Figure] = field(default_factory=list)

    def measured(self, figure: Figure) -> None:
        """Keep a figure and print it at once: a step that fails later loses nothing."""
        if not any(figure.name.startswith(name) for name in self.only):  # P2 and P2j: P2
            return
        self.figures.append(figure)
        mark = "met" if figure.met else "MISSED"
        print(
            f"{figure.name}: {figure.ratio:.3f} ({figure.ours:.3f} {figure.unit} / "
            f"{figure.baseline:.3f} {figure.unit}), goal ≤ {figure.goal}: {mark}",
            flush=True,
        )

    @property
    def network(self) -> str:
        return f"{self.run_id}-net"

    def start(self) -> None:
        docker(
            "network", "create", "--label", f"{naming.LABEL_INSTANCE}={self.run_id}", self.network
        )
        self.traefik = Traefik.start(self.root / "traefik", self.network)

    def registry(self) -> Registry:
        """A new, empty registry: nothing pushed before helps either side."""
        registry = Registry.start(self.root / f"registry-{len(self.registries)}")
        self.registries.append(registry)
        return registry

    def instance(self, label: str) -> str:
        name = f"{self.run_id}{label}"
        self.instances.append(name)
        return name

    async def gateway(
        self, scenario: str, remote: GitRemote, registry: Registry, **extra: str
    ) -> Gateway:
        assert self.traefik is not None
        instance = self.instance(scenario.lower())
        port = free_port()
        env = gateway_environment(
            registry, self.traefik, BASE_IMAGE, self.network, remote.url,
            self.root / f"state-{instance}", instance,
            **{
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(port),
                "GATEWAY_URL": f"http://127.0.0.1:{port}",
                "RATE_LIMIT": "0",
                "LOG_LEVEL": "WARNING",
                **extra,
            },
        )  # fmt: skip
        process = GatewayProcess(env, self.root / f"gateway-{instance}.log")
        self.gateways.append(process)
        return Gateway(scenario, process, env, self)

    def close(self) -> None:
        """Every step is tried, even after one fails; the first failure is raised."""
        steps: list[Callable[[], object]] = [process.stop for process in self.gateways]
        steps += [partial(remove_instance, instance) for instance in self.instances]
        steps.append(lambda: remove_images(images_of_run(self.run_id)))
        if self.traefik is not None:
            steps.append(partial(stop, self.traefik.process))
        steps += [registry.stop for registry in self.registries]
        steps.append(partial(remove_network, self.network))
        failures = []
        for step in steps:
            try:
                step()
            except Exception as exc:
                print(f"cleanup step failed: {exc!r}", file=sys.stderr)
                failures.append(exc)
        if failures:
            raise failures[0]


@dataclass
class Gateway:
    scenario: str
    process: GatewayProcess
    env: dict[str, str]
    lab: Lab
    http: aiohttp.ClientSession | None = None

    @property
    def instance(self) -> str:
        return self.env["GATEWAY_INSTANCE"]

    def host(self, project: str, path: str) -> str:
        label = naming.notebook_names(self.instance, "", project, path).host_label
        return f"{label}.{self.env['BASE_DOMAIN']}"

    async def __aenter__(self) -> Gateway:
        self.process.start()
        await self.process.healthy(120)
        self.http = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self.env['AUTH_TOKEN']}"},
            timeout=aiohttp.ClientTimeout(total=1800),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        self.lab.peak_memory[self.scenario] = peak_memory(self.process)
        if self.http is not None:
            await self.http.close()
        self.process.stop()

    async def notify(self, project: str, wait: bool = True) -> dict[str, Any]:
        assert self.http is not None
        suffix = "" if wait else "?wait=false"
        async with self.http.post(
            f"{self.process.url}/projects{suffix}", json={"project": project, "action": "update"}
        ) as response:
            body: dict[str, Any] = await response.json()
            if response.status not in (200, 202):
                raise RuntimeError(f"notifying {project} failed: {json.dumps(body)[:3000]}")
            return body


def peak_memory(process: GatewayProcess) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    assert process.process is not None
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc")


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: float | None = None

    def elapsed() -> float:
        return (end or time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


# -- the original orchestrator, as a shell script ----------------------------------------------

ORIGINAL_DOCKERFILE = """\
FROM {base}
USER 1000:100
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements.txt
COPY {notebook} /home/jovyan/work/{notebook}
WORKDIR /home/jovyan/work
EXPOSE 8888
CMD ["jupyter", "lab", "--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888", \
"--ServerApp.open_browser=False", "--IdentityProvider.token=", \
"--ServerApp.root_dir=/home/jovyan/work"]
"""


def original_contexts(root: Path, notebooks: dict[str, bytes], requirements: bytes) -> list[Path]:
    """One build directory per notebook, as the original orchestrator writes them."""
    contexts = []
    for index, (name, content) in enumerate(sorted(notebooks.items())):
        context = root / f"nb{index:03d}"
        context.mkdir(parents=True, exist_ok=True)
        filename = Path(name).name
        (context / filename).write_bytes(content)
        (context / "requirements.txt").write_bytes(requirements)
        (context / "Dockerfile").write_text(
            ORIGINAL_DOCKERFILE.format(base=BASE_IMAGE, notebook=filename)
        )
        contexts.append(context)
    return contexts


def shell(script: str, args: list[Path], env: dict[str, str]) -> None:
    """Run a bash script with arguments, as an operator's shell loop would."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script, "bash", *map(str, args)],
        env={**os.environ, "DOCKER_BUILDKIT": "0", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # the classic builder's deprecation notice, or why it failed
        text=True,
        timeout=3600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the shell script failed: {result.stderr.strip()[-3000:]}")


BUILD_LOOP = """\
for dir in "$@"; do
  docker build -q --label "notebook-gateway.instance=$INSTANCE" \\
    -t "$INSTANCE/$(basename "$dir")" "$dir"
done
"""

# What the original orchestrator does for every notebook, one after the other.
ORIGINAL_DEPLOY = """\
echo "$PASSWORD" | docker login -u "$USERNAME" --password-stdin "$REGISTRY" >/dev/null
for dir in "$@"; do
  name=$(basename "$dir")
  image="$REGISTRY/$INSTANCE/$name:latest"
  docker build -q --label "notebook-gateway.instance=$INSTANCE" -t "$image" "$dir"
  docker push -q "$image"
  docker rm -f "$INSTANCE-$name" 2>/dev/null || true
  docker run -d --name "$INSTANCE-$name" --network "$NETWORK" --restart unless-stopped \
    --label "notebook-gateway.instance=$INSTANCE" --label traefik.enable=true \
    --label "traefik.docker.network=$NETWORK" \
    --label "traefik.http.routers.$INSTANCE-$name.rule=Host(\\`$name.$DOMAIN\\`)" \
    --label "traefik.http.routers.$INSTANCE-$name.entrypoints=web" \
    --label "traefik.http.services.$INSTANCE-$name.loadbalancer.server.port=8888" \
    "$image"
done
"""


# -- P1 and P3 ---------------------------------------------------------------------------------


async def p1_and_p3(lab: Lab, repeats: int) -> None:
    projects = [f"project{p}" for p in range(5)]
    requirements = f"# shared by the project's notebooks ({lab.run_id})\n".encode()
    files: dict[str, bytes | None] = {}
    for project in projects:
        files[f"{project}/requirements.txt"] = requirements
        for n in range(10):
            files[f"{project}/nb{n}.ipynb"] = notebook(f"print('{project} notebook {n}')")
    remote = GitRemote(lab.root / "p1-git")
    remote.commit(files)

    async with await lab.gateway("P1", remote, lab.registry()) as gateway:
        print("P1: deploying 50 notebooks (setup, not timed) ...", flush=True)
        for body in await asyncio.gather(*(gateway.notify(p) for p in projects)):
            assert all(nb["state"] == "running" for nb in body["notebooks"]), body
        ours = []
        for _ in range(repeats):
            with stopwatch() as elapsed:
                bodies = await asyncio.gather(*(gateway.notify(p) for p in projects))
            ours.append(elapsed())
            actions = {nb["action"] for body in bodies for nb in body["notebooks"]}
            assert actions == {"unchanged"} and sum(len(b["notebooks"]) for b in bodies) == 50

        notebooks = {k: v for k, v in files.items() if k.endswith(".ipynb") and v is not None}
        contexts = original_contexts(lab.root / "p1-original", notebooks, requirements)
        env = {"INSTANCE": lab.instance("p1base")}
        print("P1: warming the build cache of the shell loop (not timed) ...", flush=True)
        await asyncio.to_thread(shell, BUILD_LOOP, contexts, env)
        baseline = []
        for _ in range(max(1, repeats // 2)):
            with stopwatch() as elapsed:
                await asyncio.to_thread(shell, BUILD_LOOP, contexts, env)
            baseline.append(elapsed())
        remove_instance(env["INSTANCE"])
        lab.measured(
            Figure(
                "P1",
                "no-change update of 50 notebooks in 5 projects / 50 cached `docker build`s",
                statistics.median(ours),
                statistics.median(baseline),
                0.05,
            )
        )
        if "P3" in lab.only:
            print("P3: one changed notebook, against the floor ...", flush=True)
            lab.measured(await p3(lab, gateway, remote, repeats))
    remove_instance(gateway.instance)  # the next scenario gets an engine without these 50


async def p3(lab: Lab, gateway: Gateway, remote: GitRemote, repeats: int) -> Figure:
    """Each of our runs is followed by a run of the floor with the image it deployed, so both
    sides see the machine as it is at that moment."""
    assert lab.traefik is not None
    project, path = "project0", "nb0.ipynb"
    host = gateway.host(project, path)
    contents = f"{lab.traefik.url}/api/contents/{path}"
    ours: list[float] = []
    floor: list[float] = []
    floor_instance = lab.instance("p3floor")
    async with aiohttp.ClientSession(timeout=PATIENCE) as http:
        for edition in range(repeats):
            marker = f"edition {edition} of {lab.run_id}"
            remote.commit({f"{project}/{path}": notebook(f"print({marker!r})")})
            with stopwatch() as elapsed:
                job = await gateway.notify(project, wait=False)
                await until_answers(http, contents, host=host, contains=marker, every=POLL)
            ours.append(elapsed())
            finished = await wait_for_job(gateway, job["id"])
            if lab.trace:
                print_log(finished, ours[-1])
            image = docker(
                "ps", "--filter", f"label={naming.LABEL_INSTANCE}={gateway.instance}",
                "--filter", f"label={naming.LABEL_NOTEBOOK}={path}",
                "--filter", f"label={naming.LABEL_PROJECT}={project}", "--format", "{{.Image}}",
            )  # fmt: skip
            # The floor starts Jupyter as the gateway's containers do (its command, a token).
            token = secrets.token_urlsafe(16)
            with stopwatch() as elapsed:
                container = docker(
                    "run", "-d", "--network", lab.network, "--user", "1000:100",
                    "-w", WORKDIR, "-e", f"JUPYTER_TOKEN={token}",
                    "--label", f"{naming.LABEL_INSTANCE}={floor_instance}", image,
                    *start_command(path),
                )  # fmt: skip
                address = docker(
                    "inspect", "--format",
                    f'{{{{(index .NetworkSettings.Networks "{lab.network}").IPAddress}}}}',
                    container,
                )  # fmt: skip
                await until_answers(
                    http,
                    f"http://{address}:8888/api/status",
                    authorization=f"token {token}",
                    every=POLL,
                )
            floor.append(elapsed())
            docker("rm", "-f", container)
            if lab.trace:
                print(f"  run {edition + 1}: ours {ours[-1]:.3f} s, floor {floor[-1]:.3f} s")
    return Figure(
        "P3",
        "one changed notebook, notification to new version answering / docker run to answer",
        statistics.median(ours),
        statistics.median(floor),
        1.15,
    )


async def wait_for_job(gateway: Gateway, job_id: str) -> dict[str, Any]:
    assert gateway.http is not None
    http = gateway.http

    async def read() -> dict[str, Any]:
        async with http.get(f"{gateway.process.url}/jobs/{job_id}") as response:
            job: dict[str, Any] = await response.json()
        if job["state"] == "failed":
            raise RuntimeError(f"job {job_id} failed: {json.dumps(job)[:3000]}")
        return job

    return await until(read, job_finished, timeout=600, every=0.1)


def print_log(job: dict[str, Any], elapsed: float) -> None:
    """Where the time of one P3 run went: the job's log, in seconds from its creation."""
    start = datetime.fromisoformat(job["created"])
    print(f"  {elapsed:.3f} s until the new version answered; the job's log:")
    for line in job.get("log", []):
        at = (datetime.fromisoformat(line["at"]) - start).total_seconds()
        print(f"  {at:7.3f}  {line['phase']:<10} {line['message'][:100]}")


# -- P2 ----------------------------------------------------------------------------------------


def print_milestones(job: dict[str, Any], elapsed: float) -> None:
    """Where the time of a P2 run went: when each phase first and last showed, in seconds from
    the job's creation."""
    start = datetime.fromisoformat(job["created"])
    seen: dict[str, list[float]] = {}
    for line in job.get("log", []):
        at = (datetime.fromisoformat(line["at"]) - start).total_seconds()
        seen.setdefault(line["phase"], []).append(at)
    print(f"  {elapsed:.3f} s until every notebook answered; phases (first .. last line):")
    for phase, times in seen.items():
        print(f"  {phase:<10} {min(times):7.3f} .. {max(times):7.3f}  ({len(times)} lines)")


async def p2(lab: Lab, notebooks_count: int) -> list[Figure]:
    assert lab.traefik is not None
    requirements = f"tabulate==0.9.0\n# {lab.run_id}\n".encode()
    notebooks = {
        f"shared/nb{n:02d}.ipynb": notebook(f"print('notebook {n}')")
        for n in range(notebooks_count)
    }
    remote = GitRemote(lab.root / "p2-git")
    remote.commit({**notebooks, "shared/requirements.txt": requirements})

    print(f"P2: cold deploy of {notebooks_count} notebooks by the gateway ...", flush=True)
    async with await lab.gateway("P2", remote, lab.registry()) as gateway:
        hosts = [gateway.host("shared", path.removeprefix("shared/")) for path in notebooks]
        async with aiohttp.ClientSession(timeout=PATIENCE) as http:
            with stopwatch() as elapsed:
                notified = asyncio.create_task(gateway.notify("shared"))
                # As the baseline is watched: one notebook after another, one question at a time.
                for host in hosts:
                    await until_answers(
                        http, f"{lab.traefik.url}/api/status", host=host, every=POLL
                    )
                readers = elapsed()
                body = await notified
            answered = elapsed()
        running = [nb for nb in body["notebooks"] if nb["state"] == "running"]
        assert len(running) == notebooks_count, body
        if lab.trace:
            print_milestones(await wait_for_job(gateway, body["id"]), answered)
    remove_instance(gateway.instance)  # the other side gets an idle engine

    print(f"P2: cold deploy of {notebooks_count} notebooks the original way ...", flush=True)
    registry = lab.registry()
    instance = lab.instance("p2base")
    contexts = original_contexts(lab.root / "p2-original", notebooks, requirements)
    env = {
        "REGISTRY": registry.host,
        "USERNAME": registry.username,
        "PASSWORD": registry.password,
        "NETWORK": lab.network,
        "INSTANCE": instance,
        "DOMAIN": f"{instance}.localhost",
        "DOCKER_CONFIG": str(lab.root / "docker-config"),  # its login stays out of ~/.docker
    }
    async with aiohttp.ClientSession(timeout=PATIENCE) as http:
        with stopwatch() as elapsed:
            await asyncio.to_thread(shell, ORIGINAL_DEPLOY, contexts, env)
            for context in contexts:
                host = f"{context.name}.{env['DOMAIN']}"
                await until_answers(http, f"{lab.traefik.url}/api/status", host=host, every=POLL)
        baseline = elapsed()
    remove_instance(instance)
    what = f"cold deploy of {notebooks_count} notebooks sharing requirements"
    return [
        Figure("P2", f"{what}, until every notebook answers / the original loop", readers,
               baseline, 0.5),
        Figure("P2j", f"{what}, until the notification's answer (pushes included) / the"
               " original loop", answered, baseline, 0.5),
    ]  # fmt: skip


# -- P4 ----------------------------------------------------------------------------------------


async def p4(lab: Lab, servers: int, samples: int) -> Figure:
    remote = GitRemote(lab.root / "p4-git")
    remote.commit({"p/a.ipynb": notebook("1")})
    gateway = await lab.gateway("P4", remote, lab.registry())
    instance, domain = gateway.instance, gateway.env["BASE_DOMAIN"]
    print(f"P4: {servers} running servers (setup, not timed) ...", flush=True)
    # What a gateway that has been running a while holds: its records and the containers.
    # A light process stands in for Jupyter: listing servers does not look inside them.
    store = await Store.open(Path(gateway.env["STATE_DIR"]) / "gateway.db")
    now = datetime.now(UTC).isoformat()
    names = [f"user{i:03d}-analysis-{secrets.token_hex(4)}" for i in range(servers)]
    for i, name in enumerate(names):
        await store.add_server(
            ServerRecord(
                name=name, user_id=1000 + i, username=f"user{i:03d}", namespace="group",
                project="analysis", branch="main", commit_sha="a" * 40, notebook="fit.ipynb",
                image="", options={"cpu_request": 1.0, "mem_request": "1G"},
                state=ServerState.RUNNING, message="", url=f"http://{name}.{domain}/",
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
    await store.close()
    async with aiodocker.Docker() as client:
        slots = asyncio.Semaphore(8)

        async def run(i: int, name: str) -> None:
            labels = {
                naming.LABEL_INSTANCE: instance,
                naming.LABEL_KIND: naming.KIND_USER,
                naming.LABEL_SERVER: name,
                naming.LABEL_USER_ID: str(1000 + i),
                naming.LABEL_CONTAINER: f"{instance}-{name}",
            }
            config: dict[str, Any] = {
                "Image": BASE_IMAGE,
                "Cmd": ["sleep", "infinity"],
                "Labels": labels,
                "HostConfig": {"NetworkMode": "none", "Memory": 32 * 2**20},
            }
            async with slots:
                container = await client.containers.create(config, name=f"{instance}-{name}")
                await container.start()

        await asyncio.gather(*(run(i, name) for i, name in enumerate(names)))

        async with gateway:
            assert gateway.http is not None
            listing = f"{gateway.process.url}/servers"
            async with gateway.http.get(listing) as response:
                listed = (await response.json())["servers"]
            states = {s["status"]["state"] for s in listed.values()}
            assert len(listed) >= servers and states == {"running"}, (len(listed), states)

            owned = [
                f"{naming.LABEL_INSTANCE}={instance}",
                f"{naming.LABEL_KIND}={naming.KIND_USER}",
            ]
            filters = json.dumps({"label": owned})
            engine = aiohttp.ClientSession(connector=aiohttp.UnixConnector("/var/run/docker.sock"))
            engine_list = f"http://docker/containers/json?all=1&filters={filters}"
            ours, baseline = [], []
            try:
                for sample in range(samples + 20):  # the first 20 warm up; the two alternate
                    with stopwatch() as elapsed:
                        async with gateway.http.get(listing) as response:
                            await response.read()
                    if sample >= 20:
                        ours.append(elapsed())
                    with stopwatch() as elapsed:
                        async with engine.get(engine_list) as response:
                            found = await response.json()
                    if sample >= 20:
                        baseline.append(elapsed())
                assert len(found) == servers, len(found)
            finally:
                await engine.close()
    return Figure(
        "P4",
        f"GET /servers with {servers} running servers / the engine's label-filtered list",
        statistics.median(ours) * 1000,
        statistics.median(baseline) * 1000,
        0.3,
        unit="ms",
    )


# -- the report --------------------------------------------------------------------------------


def machine() -> str:
    memory = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    engine = docker("version", "--format", "{{.Server.Version}}")
    return (
        f"{os.cpu_count()} cores, {memory / 2**30:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, Docker engine {engine}"
    )


def report(figures: list[Figure], memory: dict[str, int], memory_goal: int) -> str:
    lines = [
        f"notebook-gateway benchmark, {datetime.now(UTC):%Y-%m-%d}, {machine()}",
        "",
        f"{'':4}{'ours':>10}{'baseline':>11}{'ratio':>8}{'goal':>8}  ",
    ]
    for f in figures:
        mark = "met" if f.met else "MISSED"
        lines.append(
            f"{f.name:4}{f.ours:>8.3f}{f.unit:<2}{f.baseline:>9.3f}{f.unit:<2}"
            f"{f.ratio:>8.3f}{'≤ ' + str(f.goal):>8}  {mark}  {f.what}"
        )
    if memory:
        peak = max(memory.values())
        each = ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in sorted(memory.items()))
        mark = "met" if peak <= memory_goal else "MISSED"
        lines.append(
            f"\ngateway peak memory (VmHWM) {peak / 2**20:.0f} MB, goal ≤ "
            f"{memory_goal // 2**20} MB: {mark} ({each})"
        )
    return "\n".join(lines)


async def run(lab: Lab, args: argparse.Namespace) -> None:
    if lab.only & {"P1", "P3"}:
        await p1_and_p3(lab, args.repeats)
    if "P2" in lab.only:
        for figure in await p2(lab, args.p2_notebooks):
            lab.measured(figure)
    if "P4" in lab.only:
        lab.measured(await p4(lab, args.servers, args.samples))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="P1,P2,P3,P4", help="figures to measure, e.g. P1,P3")
    parser.add_argument("--repeats", type=int, default=5, help="runs of P1 and P3 (median)")
    parser.add_argument("--p2-notebooks", type=int, default=20)
    parser.add_argument("--servers", type=int, default=200, help="running servers for P4")
    parser.add_argument("--samples", type=int, default=200, help="requests timed for P4")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--trace", action="store_true", help="print where each P2 and P3 run's time went"
    )
    args = parser.parse_args()
    only = {name.strip().upper() for name in args.only.split(",") if name.strip()}
    try:
        docker("image", "inspect", BASE_IMAGE)
    except RuntimeError:
        print(f"base image {BASE_IMAGE} is missing; run `make stack` first", file=sys.stderr)
        return 2
    failed = False
    with tempfile.TemporaryDirectory(prefix="nbgw-bench-") as tmp:
        lab = Lab(Path(tmp), trace=args.trace, only=only)
        try:
            lab.start()
            asyncio.run(run(lab, args))
        except Exception as exc:  # the figures measured so far still count
            print(f"the benchmark stopped: {exc!r}", file=sys.stderr)
            failed = True
        try:
            lab.close()
        except Exception:
            failed = True
    figures = sorted(lab.figures, key=lambda f: f.name)
    memory_goal = 120 * 2**20
    print("\n" + report(figures, lab.peak_memory, memory_goal))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": machine(),
                    "figures": [{**f.__dict__, "ratio": f.ratio, "met": f.met} for f in figures],
                    "peak_memory": lab.peak_memory,
                },
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
