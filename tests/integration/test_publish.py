"""End to end on the real engine, registry, Traefik and git: notify -> running, routed notebooks
listed in URL.md -> a cell executes through the kernel websocket via Traefik."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.conftest import Gateway, Lane, MakeGateway, Stack, job_summary
from tests.support import jupyter
from tests.support.engine import docker, owned_containers
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# (project, notebook) -> (the code of its cell, what that code prints)
CELLS = {
    ("climate", "intro.ipynb"): (
        "import six\nprint('climate', six.__version__, 6 * 7)\n"
        "print(open('data/readings.csv').read().splitlines()[1])",
        "climate 1.16.0 42\n1,20.5\n",
    ),
    ("genomics", "Análise de dados.ipynb"): (
        "print('análise', sum(range(10)))",
        "análise 45\n",
    ),
    ("genomics", "My Notebook.ipynb"): (
        "import os, pathlib\n"
        "print(sorted(p.name for p in pathlib.Path('.').iterdir()), os.getuid())",
        "['My Notebook.ipynb'] 1000\n",
    ),
}
REPOSITORY = {
    "README.md": b"# Team notebooks\n",
    "climate/requirements.txt": b"six==1.16.0\n",
    "climate/data/readings.csv": b"t,value\n1,20.5\n",
    "climate/.ipynb_checkpoints/intro-checkpoint.ipynb": notebook("print('stale')"),
    **{f"{project}/{path}": notebook(code) for (project, path), (code, _) in CELLS.items()},
}


def url_md_links(text: str) -> dict[str, str]:
    """notebook name -> link, from the rows of URL.md."""
    links = {}
    for row in text.splitlines():
        match = re.match(r"^\| (.+?) \| <(http://[^>]+)> \| running \|", row)
        if match:
            links[match.group(1).replace("\\", "")] = match.group(2)
    return links


async def job_log(gateway: Gateway, job_id: str) -> list[dict[str, Any]]:
    response = await gateway.client.get(f"/jobs/{job_id}", headers=gateway.auth())
    return list((await response.json())["log"])


def assert_pushed_in_order(log: list[dict[str, Any]], runtime: str) -> None:
    """Containers run what their engine built: the registry gets the images once every
    notebook answers. Swarm tasks may land on any node: there the push comes first."""
    steps = [(line["phase"], line["notebook"]) for line in log if not line["output"]]
    notebooks = {notebook for phase, notebook in steps if phase == "starting"}
    assert notebooks, log
    first_push = {n: steps.index(("pushing", n)) for n in notebooks}
    if runtime == "docker":
        last_ready = max(steps.index(("ready", n)) for n in notebooks)
        assert last_ready < min(first_push.values()), steps
    else:
        assert all(first_push[n] < steps.index(("starting", n)) for n in notebooks), steps


async def test_notification_publishes_routed_notebooks(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack, lane: Lane
) -> None:
    commit = remote.commit(REPOSITORY, "Add notebooks")
    gateway = await make_gateway(**lane.env())

    for project in ("climate", "genomics"):
        tip = remote.head()
        body = await gateway.publish(project)
        assert body["state"] == "succeeded"
        # The job works from the tip (for genomics: the gateway's own URL.md commit); each
        # notebook names the commit that last changed its project.
        assert body["commit"] == tip
        for nb in body["notebooks"]:
            assert nb["commit"] == commit
            assert nb["state"] == "running", job_summary(body)
            assert nb["action"] == "built"
            assert nb["image"].startswith(f"{stack.registry.host}/{gateway.instance}/")
            assert nb["url"].endswith(f".{gateway.instance}.localhost:{lane.web_port}/")
            # Pushed: the registry has the content-addressed tag.
            assert nb["image"].rsplit(":", 1)[1] in stack.registry.tags(nb["image"])
        assert_pushed_in_order(await job_log(gateway, body["id"]), lane.runtime)

    # Checkpoints and hidden folders are not notebooks.
    assert len(owned_containers(gateway.instance)) == 3

    url_md = remote.read("URL.md")
    assert url_md is not None, "URL.md was not committed to the remote"
    links = url_md_links(url_md)
    assert set(links) == {path for _, path in CELLS}, url_md
    assert len(set(links.values())) == 3
    assert url_md.count(f"`{commit[:8]}`") == 3
    assert "## climate" in url_md and "## genomics" in url_md

    # The gateway's commit: a clear bot author and [skip ci].
    author_line = remote.log("-1")[0]
    _, author, _, subject = author_line.split("\t")
    assert author == "notebook-gateway[bot]"
    assert "[skip ci]" in subject

    async with jupyter.session() as http:
        for (project, path), (code, expected) in CELLS.items():
            link = links[path]
            async with http.get(link + "api") as response:
                assert response.status == 200
                assert "version" in await response.json()
            # The root opens the notebook itself.
            async with http.get(link, allow_redirects=False) as response:
                assert response.status == 302
                location = urllib.parse.urlsplit(response.headers["Location"]).path
                assert location == "/lab/tree/" + urllib.parse.quote(path)
            assert await jupyter.execute(http, link, code) == expected, f"{project}/{path}"


async def test_containers_are_limited_and_labelled(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    commit = remote.commit({"climate/intro.ipynb": notebook("print(1)")})
    # Without a registry (the default), images stay on the local engine.
    gateway = await make_gateway(
        NOTEBOOK_MEMORY_LIMIT="300m",
        NOTEBOOK_CPU_LIMIT="0.5",
        NOTEBOOK_PIDS_LIMIT="128",
        REGISTRY_HOST="",
        REGISTRY_USERNAME="",
        REGISTRY_PASSWORD="",
    )
    body = await gateway.publish("climate")
    assert body["notebooks"][0]["image"].startswith(f"notebook-gateway/{gateway.instance}/climate/")
    assert not any(line["phase"] == "pushing" for line in await job_log(gateway, body["id"]))
    (container,) = owned_containers(gateway.instance)
    info = json.loads(docker("inspect", container))[0]
    host = info["HostConfig"]
    assert host["Memory"] == 300 * 2**20
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 128
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["Privileged"] is False
    assert not host.get("Binds") and not info["Mounts"]
    assert host["NetworkMode"] == stack.network
    assert info["Config"]["User"] == "1000:100"
    labels = info["Config"]["Labels"]
    assert labels["notebook-gateway.project"] == "climate"
    assert labels["notebook-gateway.notebook"] == "intro.ipynb"
    assert labels["notebook-gateway.commit"] == commit
    assert re.fullmatch(r"[0-9a-f]{20}", labels["notebook-gateway.content-hash"])
    host_rule = f"Host(`intro--climate.{gateway.instance}.localhost`)"
    assert host_rule in labels.values()
    assert labels["traefik.docker.network"] == stack.network
    # No secret in labels or the environment of the container.
    flat = json.dumps(info)
    assert stack.registry.password not in flat
    assert gateway.settings.auth_token.get_secret_value() not in flat
