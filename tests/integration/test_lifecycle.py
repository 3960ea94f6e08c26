"""Updates, idempotence and deletion against the real engine, registry, Traefik and git."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters.store import Store
from gateway.records import JobAction
from tests.conftest import MakeGateway, Stack, job_summary
from tests.support.engine import docker, owned_containers, owned_images
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def containers_by_notebook(instance: str) -> dict[str, str]:
    found = {}
    for container in owned_containers(instance):
        labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", container))
        found[labels["notebook-gateway.notebook"]] = container
    return found


def images_by_label(instance: str, kind: str, label: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for image in owned_images(instance):
        labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", image))
        if labels["notebook-gateway.kind"] == kind:
            found.setdefault(labels[label], set()).add(image)
    return found


def images_by_notebook(instance: str) -> dict[str, set[str]]:
    return images_by_label(instance, "published", "notebook-gateway.notebook")


def environments_by_project(instance: str) -> dict[str, set[str]]:
    return images_by_label(instance, "environment", "notebook-gateway.project")


def actions(body: dict[str, Any]) -> dict[str, str]:
    return {nb["name"]: nb["action"] for nb in body["notebooks"]}


def container_names(instance: str) -> dict[str, str]:
    """notebook -> container name."""
    return {
        notebook: docker("inspect", "--format", "{{.Name}}", container).lstrip("/")
        for notebook, container in containers_by_notebook(instance).items()
    }


def uploads(job: dict[str, Any]) -> dict[str, int]:
    """How often each layer was uploaded (not linked from another repository) by the job."""
    counts: dict[str, int] = {}
    for line in job["log"]:
        layer, _, status = line["message"].partition(" ")
        if line["phase"] == "pushing" and status == "Pushed":
            counts[layer] = counts.get(layer, 0) + 1
    return counts


async def test_update_idempotence_and_deletion(
    make_gateway: MakeGateway, remote: GitRemote, stack: Stack
) -> None:
    remote.commit(
        {
            "climate/a.ipynb": notebook("print('a')"),
            "climate/b.ipynb": notebook("print('b')"),
            "other/c.ipynb": notebook("print('c')"),
        }
    )
    gateway = await make_gateway()
    pushed = {}
    for project in ("climate", "other"):
        body = await gateway.publish(project)
        pushed.update({nb["name"]: nb["image"] for nb in body["notebooks"]})
        # Images on one new environment upload its layers once; the others link them.
        counts = uploads(await gateway.wait_for_job(body["id"]))
        assert counts and max(counts.values()) == 1, counts
    containers = containers_by_notebook(gateway.instance)
    names = container_names(gateway.instance)
    images = images_by_notebook(gateway.instance)
    assert set(containers) == {"a.ipynb", "b.ipynb", "c.ipynb"}
    # One environment per project; the notebooks of a project share it.
    environments = environments_by_project(gateway.instance)
    assert {p: len(ids) for p, ids in environments.items()} == {"climate": 1, "other": 1}
    commits = len(remote.log())

    # The same notification again: no build, no restart, no commit.
    body = await gateway.publish("climate")
    assert actions(body) == {"a.ipynb": "unchanged", "b.ipynb": "unchanged"}
    assert containers_by_notebook(gateway.instance) == containers
    assert images_by_notebook(gateway.instance) == images
    assert len(remote.log()) == commits

    # One notebook changes: exactly one image is built, the other container is untouched,
    # and the old image of the changed notebook is gone.
    remote.commit({"climate/a.ipynb": notebook("print('a, second edition')")})
    body = await gateway.publish("climate")
    assert actions(body) == {"a.ipynb": "built", "b.ipynb": "unchanged"}
    after = containers_by_notebook(gateway.instance)
    assert after["b.ipynb"] == containers["b.ipynb"]
    assert after["a.ipynb"] != containers["a.ipynb"]
    # The new container started beside the old one, and took its name once it was gone.
    assert container_names(gateway.instance) == names
    new_images = images_by_notebook(gateway.instance)
    assert len(new_images["a.ipynb"]) == 1 and new_images["a.ipynb"] != images["a.ipynb"]
    assert new_images["b.ipynb"] == images["b.ipynb"]
    # The registry keeps only the image that runs.
    new_a = next(nb["image"] for nb in body["notebooks"] if nb["name"] == "a.ipynb")
    assert stack.registry.tags(new_a) == [new_a.rsplit(":", 1)[1]]
    assert environments_by_project(gateway.instance) == environments

    # New requirements: the environment is built once for both notebooks, the old one goes.
    remote.commit({"climate/requirements.txt": b"# nothing to install\n"})
    body = await gateway.publish("climate")
    assert actions(body) == {"a.ipynb": "built", "b.ipynb": "built"}
    job = await gateway.wait_for_job(body["id"])
    builds = [
        line["message"]
        for line in job["log"]
        if line["phase"] == "building" and line["message"].startswith("building ")
    ]
    assert sum("--env:" in message for message in builds) == 1, builds
    changed = environments_by_project(gateway.instance)
    assert len(changed["climate"]) == 1 and changed["climate"] != environments["climate"]
    assert changed["other"] == environments["other"]
    new_a = next(nb["image"] for nb in body["notebooks"] if nb["name"] == "a.ipynb")

    # A deleted notebook loses its container, its image and its line in URL.md.
    remote.commit({"climate/b.ipynb": None}, "Remove b")
    body = await gateway.publish("climate")
    assert actions(body) == {"a.ipynb": "unchanged", "b.ipynb": "removed"}
    assert set(containers_by_notebook(gateway.instance)) == {"a.ipynb", "c.ipynb"}
    assert "b.ipynb" not in images_by_notebook(gateway.instance)
    assert stack.registry.tags(pushed["b.ipynb"]) == []
    url_md = remote.read("URL.md") or ""
    assert "| a.ipynb |" in url_md and "| b.ipynb |" not in url_md and "| c.ipynb |" in url_md

    # DELETE /projects removes everything of the project and its section of URL.md.
    status, body = await gateway.delete("climate")
    assert status == 200, job_summary(body)
    assert set(containers_by_notebook(gateway.instance)) == {"c.ipynb"}
    assert set(images_by_notebook(gateway.instance)) == {"c.ipynb"}
    assert set(environments_by_project(gateway.instance)) == {"other"}
    assert stack.registry.tags(new_a) == []
    assert stack.registry.tags(pushed["c.ipynb"]) != []
    url_md = remote.read("URL.md") or ""
    assert "## climate" not in url_md and "## other" in url_md

    # Nothing of it is left, so deleting it again is an unknown project.
    status, body = await gateway.delete("climate")
    assert status == 404, job_summary(body)
    assert body["error"]["code"] == "unknown_project"


async def test_removed_project_folder_takes_its_notebooks_along(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway()
    body = await gateway.publish("climate")

    remote.commit({"climate": None}, "Drop the climate project")
    body = await gateway.publish("climate")
    assert actions(body) == {"a.ipynb": "removed"}
    assert owned_containers(gateway.instance) == []
    assert owned_images(gateway.instance) == []
    assert "No notebooks are published yet." in (remote.read("URL.md") or "")


async def test_wait_false_answers_at_once_with_a_job_to_poll(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    gateway = await make_gateway()
    status, body = await gateway.notify("climate", wait=False)
    assert status == 202, job_summary(body)
    assert body["state"] in ("queued", "running")
    job_url = f"/jobs/{body['id']}"
    assert body["url"].endswith(job_url)

    # The job finishes on its own; poll it as a CI job would.
    job = await gateway.wait_for_job(body["id"])
    assert job["state"] == "succeeded", job_summary(job)
    assert job["notebooks"][0]["state"] == "running"
    phases = [line["phase"] for line in job["log"]]
    for phase in ("fetching", "building", "pushing", "starting", "ready", "publishing", "done"):
        assert phase in phases, phases
    response = await gateway.client.get(job_url)
    assert response.status == 401


async def test_concurrent_notifications_for_different_projects_all_reach_url_md(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({f"{p}/{p}.ipynb": notebook(f"print('{p}')") for p in ("one", "two", "three")})
    gateway = await make_gateway()
    answers = await asyncio.gather(*(gateway.notify(p) for p in ("one", "two", "three")))
    for status, body in answers:
        assert status == 200, job_summary(body)
    url_md = remote.read("URL.md") or ""
    for project in ("one", "two", "three"):
        assert f"| {project}.ipynb | <http://{project}--{project}." in url_md, url_md


async def test_a_job_left_unfinished_by_a_stopped_gateway_runs_at_start(
    make_gateway: MakeGateway, remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit({"climate/a.ipynb": notebook("print('a')")})
    state = tmp_path / "resumed-state"
    # What a gateway killed right after accepting a notification leaves behind.
    store = await Store.open(state / "gateway.db")
    job, _ = await store.create_job("climate", JobAction.UPDATE)
    await store.mark_running(job.id)
    await store.close()

    gateway = await make_gateway(STATE_DIR=str(state))
    body = await gateway.wait_for_job(job.id)
    assert body["state"] == "succeeded", job_summary(body)
    assert "| a.ipynb | <http" in (remote.read("URL.md") or "")
