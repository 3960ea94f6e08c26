"""No way around the guard. Anyone may run code in a published notebook's kernel; from there
(a container on the notebooks' network, as the notebook user), no other notebook's Jupyter
answers, a user's server least of all, and neither does the control plane. Through Traefik,
every notebook answers exactly whom it should. On both runtimes."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Lane, MakeGateway, Stack, docker_ps, job_summary
from tests.integration.test_failures import silent_base
from tests.support import jupyter
from tests.support.engine import docker
from tests.support.gitlab_server import DEVELOPER, GitLab
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# Run inside a container: what a visitor's kernel could do with the standard library.
# argv: a JSON list of HTTP probes [label, url, method, headers, body], a JSON list of
# [label, host, port] TCP connections, and a kernel websocket [label, host, port, path].
ATTACK = r"""
import json, os, socket, sys, urllib.error, urllib.request

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

opener = urllib.request.build_opener(NoRedirect)
found = {"http": {}, "tcp": {}, "ws": {}, "socket": os.path.exists("/var/run/docker.sock")}
for label, url, method, headers, body in json.loads(sys.argv[1]):
    request = urllib.request.Request(
        url, data=body.encode() if body else None, method=method, headers=headers
    )
    try:
        with opener.open(request, timeout=5) as answer:
            found["http"][label] = [answer.status, answer.read(4000).decode("utf-8", "replace")]
    except urllib.error.HTTPError as error:
        found["http"][label] = [error.code, error.read(4000).decode("utf-8", "replace")]
    except OSError as error:
        found["http"][label] = [None, repr(error)]
for label, host, port in json.loads(sys.argv[2]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        found["tcp"][label] = True
    except OSError:
        found["tcp"][label] = False
for label, host, port, path in json.loads(sys.argv[3]):
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            found["ws"][label] = conn.recv(200).decode("latin-1").split("\r\n")[0]
    except OSError as error:
        found["ws"][label] = repr(error)
print(json.dumps(found))
"""

# The host, as a container sees it: its default route.
GATEWAY_ADDRESS = r"""
import socket, struct
for line in open("/proc/net/route").read().splitlines()[1:]:
    fields = line.split()
    if fields[1] == "00000000":
        print(socket.inet_ntoa(struct.pack("<L", int(fields[2], 16))))
        break
"""


def workload(instance: str, **labels: str) -> str:
    """The container behind a notebook or a server (a Swarm task's, for a service): the
    gateway's labels are on both."""
    filters = [f"--filter=label=notebook-gateway.instance={instance}"]
    filters += [f"--filter=label=notebook-gateway.{k}={v}" for k, v in labels.items()]
    found = docker("ps", "-q", "--no-trunc", *filters).split()
    assert len(found) == 1, (labels, found)
    return found[0]


def inspect(container: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(docker("inspect", container))[0]
    return found


def address(container: str, network: str) -> str:
    return str(inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"])


def names_of(container: str, network: str) -> list[str]:
    """The names other containers may use for it on the network."""
    info = inspect(container)
    aliases = info["NetworkSettings"]["Networks"][network].get("Aliases") or []
    service = info["Config"]["Labels"].get("com.docker.swarm.service.name")
    found = [info["Name"].lstrip("/"), *aliases, *([service] if service else [])]
    return sorted({name for name in found if name and len(name) < 64 and "." not in name})


def token_of(container: str) -> str:
    env: dict[str, str] = dict(line.split("=", 1) for line in inspect(container)["Config"]["Env"])
    return env["JUPYTER_TOKEN"]


def attack(
    container: str,
    probes: list[list[Any]],
    connections: list[list[Any]] = (),  # type: ignore[assignment]
    websockets: list[list[Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    out = docker(
        "exec", "-u", "1000:100", container, "python3", "-c", ATTACK,
        json.dumps(probes), json.dumps(list(connections)), json.dumps(list(websockets)),
        timeout=180,
    )  # fmt: skip
    return dict(json.loads(out.splitlines()[-1]))


def jupyter_probes(label: str, host: str) -> list[list[Any]]:
    """What a kernel would try against another notebook's Jupyter."""
    base = f"http://{host}:8888"
    kernel = json.dumps({"name": "python3"})
    json_type = {"Content-Type": "application/json"}
    return [
        [f"{label} contents", f"{base}/api/contents/", "GET", {}, ""],
        [f"{label} status", f"{base}/api/status", "GET", {}, ""],
        [f"{label} new kernel", f"{base}/api/kernels", "POST", json_type, kernel],
        [f"{label} kernels", f"{base}/api/kernels", "GET", {}, ""],
        [f"{label} empty token", f"{base}/api/contents/", "GET", {"Authorization": "token "}, ""],
        [f"{label} guessed", f"{base}/api/contents/?token=guess", "GET", {}, ""],
    ]


def listeners(container: str) -> list[tuple[str, int]]:
    """Every TCP socket the container listens on: (address in /proc's hex, port)."""
    out = docker("exec", container, "cat", "/proc/net/tcp", "/proc/net/tcp6")
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # LISTEN
            host, port = fields[1].rsplit(":", 1)
            found.append((host, int(port, 16)))
    return found


def loopback(host: str) -> bool:
    """127.0.0.0/8 (Docker's DNS answers on 127.0.0.11 in the container) or ::1."""
    return (len(host) == 8 and host.endswith("7F")) or host == "0" * 24 + "01000000"


def assert_refused(found: dict[str, Any], secret_words: list[str]) -> None:
    for label, (status, body) in found["http"].items():
        assert status in (None, 401, 403), (label, status, body[:500])
        assert not any(word in body for word in secret_words), (label, body[:500])
    for label, line in found["ws"].items():
        assert "101" not in line, (label, line)


async def test_no_way_around_the_guard(
    make_gateway: MakeGateway,
    remote: GitRemote,
    gitlab: tuple[GitLab, str],
    stack: Stack,
    lane: Lane,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-" + secrets.token_hex(8))
    bob = lab.user("bob", "glpat-bob-" + secrets.token_hex(8))
    marker = f"only-alice-{secrets.token_hex(4)}.txt"
    project = lab.project("group/analysis", {alice: DEVELOPER, bob: DEVELOPER})
    sha = project.remote.commit({"fit.ipynb": notebook("print('fit')"), marker: b"private\n"})
    remote.commit({"published/p.ipynb": notebook("print('public')")})
    # Listening everywhere, so a kernel could reach the API if it were open to it.
    gateway = await make_gateway(GITLAB_URL=gitlab_url, GATEWAY_HOST="0.0.0.0", **lane.env())
    body = await gateway.publish("published")
    published_url = body["notebooks"][0]["url"]

    servers = {}
    for user in (alice, bob):
        response = await gateway.client.post(
            "/servers",
            json={"namespace": "group", "project": "analysis", "commit_sha": sha},
            headers=gateway.auth(user.token),
        )
        assert response.status == 201, await response.text()
        servers[user.username] = (await response.json())["name"]
    for user in (alice, bob):
        async with asyncio.timeout(300):
            while True:
                response = await gateway.client.get(
                    f"/servers/{servers[user.username]}", headers=gateway.auth(user.token)
                )
                server = await response.json()
                if server["status"]["state"] == "running":
                    break
                assert server["status"]["state"] == "starting", server
                await asyncio.sleep(1)
    alice_url = f"http://{servers['alice']}.{gateway.settings.base_domain}:{lane.web_port}/"

    # Through Traefik, with her token, Alice reads her files and runs code; she keeps a
    # kernel open for what follows.
    as_alice = {"Authorization": f"Bearer {alice.token}"}
    async with jupyter.session() as http:
        async with http.get(alice_url + "api/contents/", headers=as_alice) as answer:
            assert answer.status == 200 and marker in await answer.text()
        async with http.post(
            alice_url + "api/kernels", json={"name": "python3"}, headers=as_alice
        ) as answer:
            assert answer.status == 201, await answer.text()
            kernel = (await answer.json())["id"]
        authorized = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=jupyter.LocalhostResolver()), headers=as_alice
        )
        async with authorized:
            assert await jupyter.execute(authorized, alice_url, "print(6 * 7)") == "42\n"
        # Bob, or nobody, through Traefik: refused. A page of another notebook host may not
        # act with Alice's credentials (Jupyter itself trusts whatever carries its token).
        async with http.get(alice_url + "api/contents/", headers=gateway.auth(bob.token)) as a:
            assert a.status == 403
        async with http.get(alice_url + "api/contents/") as answer:
            assert answer.status == 401
        foreign = {**as_alice, "Origin": published_url.rstrip("/")}
        async with http.post(
            alice_url + "api/kernels", json={"name": "python3"}, headers=foreign
        ) as answer:
            assert answer.status == 403
        own = {**as_alice, "Origin": alice_url.rstrip("/")}
        async with http.get(alice_url + "api/kernels", headers=own) as answer:
            assert answer.status == 200
        # The published notebook still opens for anyone.
        async with http.get(published_url + "api/contents/") as answer:
            assert answer.status == 200 and "p.ipynb" in await answer.text()

    instance, network = gateway.instance, lane.network
    published = workload(instance, kind="published")
    alices = workload(instance, server=servers["alice"])
    bobs = workload(instance, server=servers["bob"])
    # What runs is what the settings make: a reconcile pass leaves all three alone.
    response = await gateway.client.post("/reconcile", headers=gateway.auth())
    assert response.status == 200, await response.text()
    assert [
        workload(instance, kind="published"),
        workload(instance, server=servers["alice"]),
        workload(instance, server=servers["bob"]),
    ] == [published, alices, bobs]
    secret_words = [marker, "fit.ipynb", kernel]

    # From a visitor's kernel in the published notebook, and from Bob's own server: Alice's
    # Jupyter, by every name it has on the network and by address, answers nothing.
    targets = [*names_of(alices, network), address(alices, network)]
    assert len(targets) >= 2, targets
    probes = [probe for target in targets for probe in jupyter_probes(target, target)]
    websockets = [[f"{t} kernel", t, 8888, f"/api/kernels/{kernel}/channels"] for t in targets]
    for attacker in (published, bobs):
        found = attack(attacker, probes, websockets=websockets)
        assert_refused(found, secret_words)
        assert all(status in (401, 403) for status, _ in found["http"].values()), found
        assert all(line.startswith("HTTP/1.1 403") for line in found["ws"].values()), found
    # Nor does the published notebook answer Bob's server directly.
    found = attack(bobs, jupyter_probes("published", address(published, network)))
    assert_refused(found, ["p.ipynb"])
    # Jupyter is all a server offers the network: its kernels listen on loopback alone.
    listening = listeners(alices)
    assert any(port == 8888 for _, port in listening), listening
    assert all(loopback(host) for host, port in listening if port != 8888), listening

    # Nor the control plane: the gateway's API refuses, the forward-auth answers only the
    # proxy, and the registry, Traefik's API and the Docker API are out of reach.
    host = docker("exec", published, "python3", "-c", GATEWAY_ADDRESS)
    api = f"http://{host}:{gateway.settings.gateway_port}"
    registry_port = int(stack.registry.host.rsplit(":", 1)[1])
    traefik_port = int(lane.traefik_url.rsplit(":", 1)[1])
    basic = aiohttp.encode_basic_auth(stack.registry.username, stack.registry.password)
    found = attack(
        published,
        [
            ["jobs", f"{api}/jobs", "GET", {}, ""],
            ["servers", f"{api}/servers", "GET", {}, ""],
            ["reconcile", f"{api}/reconcile", "POST", {}, ""],
            ["forward-auth", f"{api}/auth/forward", "GET", {"X-Forwarded-Host": "x"}, ""],
            ["registry", f"http://{host}:{registry_port}/v2/_catalog", "GET", {}, ""],
            [
                "registry with its password",
                f"http://{host}:{registry_port}/v2/_catalog",
                "GET",
                {"Authorization": basic},
                "",
            ],
            ["traefik api", f"http://{host}:{traefik_port}/api/rawdata", "GET", {}, ""],
            ["traefik dashboard", f"http://{host}:{traefik_port}/dashboard/", "GET", {}, ""],
            ["docker", f"http://{host}:2375/version", "GET", {}, ""],
        ],
        connections=[["docker tcp", host, 2375], ["docker tls", host, 2376]],
    )
    api_answers = {k: found["http"][k][0] for k in ("jobs", "servers", "reconcile")}
    assert set(api_answers.values()) <= {None, 401}, found
    assert found["http"]["forward-auth"][0] in (None, 403), found
    for label in ("registry", "registry with its password", "docker"):
        assert found["http"][label][0] in (None, 401), (label, found["http"][label])
    for label in ("traefik api", "traefik dashboard"):
        assert found["http"][label][0] in (None, 404), (label, found["http"][label])
    assert found["tcp"] == {"docker tcp": False, "docker tls": False}
    assert found["socket"] is False
    env = " ".join(inspect(published)["Config"]["Env"])
    assert stack.registry.password not in env
    assert gateway.settings.auth_token.get_secret_value() not in env

    # The tokens that open the Jupyters never reach an answer, a log, URL.md or an image.
    tokens = [token_of(c) for c in (published, alices, bobs)]
    assert len(set(tokens)) == 3 and all(len(t) >= 32 for t in tokens)
    admin = gateway.auth()
    texts = []
    for path in (
        "/servers",
        f"/servers/{servers['alice']}",
        f"/logs/{servers['alice']}",
        "/status",
        "/jobs?limit=100",
        f"/jobs/{body['id']}",
    ):
        response = await gateway.client.get(path, headers=admin)
        assert response.status == 200, path
        texts.append(await response.text())
    for container in (published, alices, bobs):
        texts.append(docker("logs", container))
        image = inspect(container)["Image"]
        texts += [docker("image", "inspect", image), docker("history", "--no-trunc", image)]
    texts.append(remote.read("URL.md") or "")
    texts.append(caplog.text)
    if lane.runtime == "docker":
        texts.append(stack.traefik.log.read_text())
    for token in tokens:
        assert not [text for text in texts if token in text]


async def test_notebooks_of_an_earlier_release_are_replaced_and_the_hole_closes(
    make_gateway: MakeGateway, remote: GitRemote, gitlab: tuple[GitLab, str], stack: Stack
) -> None:
    """Containers as the release before this one started them (no shape, Jupyter without a
    token, a route without the token's middleware) answer anyone on the network. The first
    reconcile pass after the upgrade replaces them, one hand-over each."""
    lab, gitlab_url = gitlab
    alice = lab.user("alice", "glpat-alice-" + secrets.token_hex(8))
    project = lab.project("group/analysis", {alice: DEVELOPER})
    sha = project.remote.commit({"fit.ipynb": notebook("print('fit')")})
    remote.commit({"published/p.ipynb": notebook("print('public')")})
    gateway = await make_gateway(GITLAB_URL=gitlab_url)
    body = await gateway.publish("published")
    response = await gateway.client.post(
        "/servers",
        json={"namespace": "group", "project": "analysis", "commit_sha": sha},
        headers=gateway.auth(alice.token),
    )
    name = (await response.json())["name"]
    async with asyncio.timeout(300):
        while True:
            response = await gateway.client.get(f"/servers/{name}", headers=gateway.auth())
            if (await response.json())["status"]["state"] == "running":
                break
            await asyncio.sleep(1)

    instance, network = gateway.instance, stack.network
    old = [as_released_before(workload(instance, kind="published"), network)]
    old.append(as_released_before(workload(instance, server=name), network))
    probe = docker("run", "-d", "--network", network, stack.base_image, "sleep", "600")
    try:
        targets = [address(container, network) for container in old]
        probes = [p for t in targets for p in jupyter_probes(t, t)[:1]]
        for _ in range(60):  # until their Jupyters are up: then they answer anyone
            found = attack(probe, probes)
            if all(status == 200 for status, _ in found["http"].values()):
                break
            await asyncio.sleep(1)
        assert all(status == 200 for status, _ in found["http"].values()), found  # the hole

        response = await gateway.client.post("/reconcile", headers=gateway.auth())
        assert response.status == 200, await response.text()
        published, server = workload(instance, kind="published"), workload(instance, server=name)
        assert {published, server}.isdisjoint(old)
        labels = [inspect(c)["Config"]["Labels"] for c in (published, server)]
        assert all(label.get("notebook-gateway.shape") for label in labels)
        targets = [address(container, network) for container in (published, server)]
        found = attack(probe, [p for t in targets for p in jupyter_probes(t, t)])
        assert_refused(found, ["fit.ipynb", "p.ipynb"])
        for container in old:
            assert docker("ps", "-aq", "--filter", f"id={container}") == ""
        # Through Traefik both work as before.
        async with jupyter.session() as http:
            async with http.get(body["notebooks"][0]["url"] + "api/contents/") as answer:
                assert answer.status == 200
            url = f"http://{name}.{gateway.settings.base_domain}:{stack.traefik.web_port}/"
            async with http.get(url + "api/contents/", headers=gateway.auth(alice.token)) as a:
                assert a.status == 200
        response = await gateway.client.get(f"/servers/{name}", headers=gateway.auth())
        assert (await response.json())["status"]["state"] == "running"
    finally:
        docker("rm", "-f", probe, check=False)


def as_released_before(container: str, network: str) -> str:
    """Start the container again as the previous release would have: its labels without a
    shape and without the token's middleware (a guarded route dropped the Authorization
    header instead), and Jupyter with an empty token. Returns the new container."""
    info = inspect(container)
    labels = {
        key: value
        for key, value in info["Config"]["Labels"].items()
        if key != "notebook-gateway.shape" and "-token." not in key
    }
    for key, value in list(labels.items()):
        if key.endswith(".middlewares"):
            guard = [m for m in value.split(",") if not m.endswith("-token")]
            if guard:
                strip = f"{guard[0].removesuffix('-auth')}-strip-credentials"
                labels[key] = ",".join([*guard, strip])
                header = f"traefik.http.middlewares.{strip}.headers.customrequestheaders"
                labels[f"{header}.Authorization"] = ""
            else:
                del labels[key]
    name = info["Name"].lstrip("/")
    docker("rm", "-f", container)
    label_args = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]
    return docker(
        "run", "-d", "--name", name, "--network", network, "--user", "1000:100",
        "--hostname", info["Config"]["Hostname"], "-w", "/home/jovyan/work", *label_args,
        info["Config"]["Image"],
        "jupyter", "lab", "--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888",
        "--ServerApp.open_browser=False", "--ServerApp.allow_remote_access=True",
        "--IdentityProvider.token=",
    )  # fmt: skip


async def test_running_notebooks_follow_a_change_of_settings(
    make_gateway: MakeGateway, remote: GitRemote, lane: Lane
) -> None:
    """An operator turns PROTECT_PUBLISHED on and lowers the process limit: the next
    reconcile pass replaces the running notebook, whose content did not change, and its
    route is guarded from then on."""
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway(**lane.env())
    body = await gateway.publish("climate")
    url = body["notebooks"][0]["url"]
    async with jupyter.session() as http, http.get(url + "api/contents/") as answer:
        assert answer.status == 200  # public
    before = workload(gateway.instance, kind="published")

    guarded = await make_gateway(
        GATEWAY_INSTANCE=gateway.instance,
        BASE_DOMAIN=gateway.settings.base_domain,
        STATE_DIR=str(gateway.settings.state_dir),
        PROTECT_PUBLISHED="true",
        NOTEBOOK_PIDS_LIMIT="256",
        **lane.env(),
    )
    response = await guarded.client.post("/reconcile", headers=guarded.auth())
    result = await response.json()
    assert response.status == 200 and result["result"]["updated"] == ["climate"], result
    after = workload(gateway.instance, kind="published")
    assert after != before
    assert inspect(after)["HostConfig"]["PidsLimit"] == 256
    async with jupyter.session() as http:
        async with http.get(url + "api/contents/") as answer:
            assert answer.status == 401
        async with http.get(url + "api/contents/", headers=guarded.auth()) as answer:
            assert answer.status == 200
    # The next pass keeps it: the notebook is now what the settings make.
    status, body = await guarded.notify("climate")
    assert status == 200 and body["notebooks"][0]["action"] == "unchanged", job_summary(body)
    assert workload(gateway.instance, kind="published") == after


async def test_a_notebook_of_an_earlier_release_never_serves_again_though_its_successor_fails(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, tmp_path: Path
) -> None:
    """A new version that does not answer gives way to the previous one, unless the previous
    one answered anyone who reached it: then the notebook stays down, with the reason."""
    remote.commit({"climate/a.ipynb": notebook("print('first')")})
    gateway = await make_gateway()
    body = await gateway.publish("climate")
    url = body["notebooks"][0]["url"]
    old = as_released_before(workload(gateway.instance, kind="published"), stack.network)

    await gateway.client.close()  # upgraded, and (by bad luck) on a base that never answers
    broken = await make_gateway(
        GATEWAY_INSTANCE=gateway.instance,
        STATE_DIR=str(gateway.settings.state_dir),
        BASE_DOMAIN=gateway.settings.base_domain,
        BASE_IMAGE=silent_base(stack, tmp_path, gateway.instance),
        NOTEBOOK_READY_TIMEOUT="3",
    )
    remote.commit({"climate/a.ipynb": notebook("print('second')")})
    status, body = await broken.notify("climate")
    assert status == 422, job_summary(body)
    (nb,) = body["error"]["detail"]["job"]["notebooks"]
    assert nb["reason"] == "not_ready" and "still served" not in nb["message"], nb
    assert docker("ps", "-aq", "--filter", f"id={old}") == ""
    (left,) = docker_ps(gateway.instance).values()
    assert left[1] == "exited"  # the new version, stopped, for its log
    async with jupyter.session() as http, http.get(url + "api/contents/") as answer:
        assert answer.status in (404, 502, 503)
