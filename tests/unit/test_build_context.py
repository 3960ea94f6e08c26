import io
import tarfile
from dataclasses import replace
from typing import Any, cast

from gateway.adapters.runtimes.swarm import SwarmRuntime
from gateway.models import ContextFile, ProjectSnapshot, RepoFile, RunningServer
from gateway.publish.context_tar import write_context_tar
from gateway.publish.desired import (
    build_context,
    content_hash,
    desired_notebooks,
    desired_servers,
)
from gateway.publish.dockerfile import REQUIREMENTS
from gateway.records import ServerRecord, ServerState
from gateway.settings import Settings

BLOBS = {"b-nb": b'{"cells": []}', "b-req": b"six\n", "b-csv": b"t,v\n", "b-sh": b"#!/bin/sh\n"}

SNAPSHOT = ProjectSnapshot(
    name="climate",
    commit="c" * 40,
    notebooks=(RepoFile("Análise.ipynb", "b-nb", len(BLOBS["b-nb"])),),
    shared=(
        RepoFile("data/x.csv", "b-csv", len(BLOBS["b-csv"])),
        RepoFile("requirements.txt", "b-req", len(BLOBS["b-req"])),
        RepoFile("run.sh", "b-sh", len(BLOBS["b-sh"]), executable=True),
    ),
    requirements=RepoFile("requirements.txt", "b-req", len(BLOBS["b-req"])),
)
SETTINGS = Settings.from_env(
    {"AUTH_TOKEN": "t" * 20, "GITLAB_REPO_URL": "/srv/r.git", "BASE_DOMAIN": "nb.example.org"}
)


def read(sha: str) -> io.BytesIO:
    return io.BytesIO(BLOBS[sha])


def test_context_holds_only_what_the_image_needs() -> None:
    context = build_context(SNAPSHOT, SNAPSHOT.notebooks[0], b"FROM x\n")
    with tarfile.open(fileobj=write_context_tar(context, read, 1_700_000_000)) as tar:
        files = {m.name: m for m in tar.getmembers() if m.isfile()}
        notebook = tar.extractfile(files["notebook/Análise.ipynb"])
        assert notebook is not None and notebook.read() == BLOBS["b-nb"]
        members = tar.getmembers()
    # The environment (requirements, start script) is its own image; this one only adds files.
    assert set(files) == {
        "Dockerfile",
        "shared/data/x.csv",
        "shared/requirements.txt",
        "shared/run.sh",
        "notebook/Análise.ipynb",
    }
    assert files["shared/run.sh"].mode == 0o755 and files["shared/data/x.csv"].mode == 0o644
    assert all(m.uid == 0 and m.mtime == 1_700_000_000 for m in members)


def test_tar_is_deterministic() -> None:
    context = build_context(SNAPSHOT, SNAPSHOT.notebooks[0], b"FROM x\n")
    assert write_context_tar(context, read, 1).read() == write_context_tar(context, read, 1).read()


def test_content_hash_follows_every_input() -> None:
    base = (ContextFile("Dockerfile", 1, data=b"A"), ContextFile("notebook/a.ipynb", 1, blob="b1"))
    digest = content_hash(base, "sha256:base")
    assert digest == content_hash(tuple(reversed(base)), "sha256:base")  # order does not matter
    assert digest != content_hash(base, "sha256:other-base")
    assert digest != content_hash(
        (base[0], ContextFile("notebook/a.ipynb", 1, blob="b2")), "sha256:base"
    )
    assert digest != content_hash((ContextFile("Dockerfile", 1, data=b"B"), base[1]), "sha256:base")
    assert digest != content_hash(
        (base[0], ContextFile("notebook/a.ipynb", 1, blob="b1", executable=True)), "sha256:base"
    )


def test_desired_notebook_names_labels_and_url() -> None:
    (nb,) = desired_notebooks(SNAPSHOT, SETTINGS.workloads, "sha256:base")
    assert nb.url == f"http://{nb.host_label}.nb.example.org/"
    assert (
        nb.image
        == f"notebook-gateway/nbgw/climate/{nb.host_label.split('--')[0]}:{nb.content_hash}"
    )
    labels = nb.launch.labels
    assert labels["notebook-gateway.notebook"] == "Análise.ipynb"
    assert labels["notebook-gateway.commit"] == "c" * 40
    assert nb.launch.name == nb.container and nb.launch.router == nb.container
    # Another commit with the same content is the same image, and the same container.
    moved = ProjectSnapshot(**{**SNAPSHOT.__dict__, "commit": "d" * 40})
    (again,) = desired_notebooks(moved, SETTINGS.workloads, "sha256:base")
    assert again.image == nb.image and again.launch.shape == nb.launch.shape


def test_the_environment_is_shared_and_depends_only_on_base_and_requirements() -> None:
    (nb,) = desired_notebooks(SNAPSHOT, SETTINGS.workloads, "sha256:base")
    env = nb.environment
    assert env is not None and nb.spec.parent == env and not env.push
    assert env.image.startswith("notebook-gateway/nbgw/climate--env:")
    names = {f.arcname for f in env.context}
    assert names == {"Dockerfile", ".gateway/workdir/", ".gateway/requirements.txt"}
    assert env.install is not None and env.install[-1] == REQUIREMENTS
    assert env.labels["notebook-gateway.kind"] == "environment"
    # A changed notebook: same environment, another image.
    edited = RepoFile("Análise.ipynb", "b-other", 3)
    changed = desired_notebooks(
        ProjectSnapshot(**{**SNAPSHOT.__dict__, "notebooks": (edited,)}),
        SETTINGS.workloads,
        "sha256:base",
    )[0]
    assert changed.environment == env and changed.image != nb.image
    # Changed requirements, or another base image: another environment, and every image with it.
    for snapshot, base in (
        (
            ProjectSnapshot(
                **{**SNAPSHOT.__dict__, "requirements": RepoFile("requirements.txt", "b-new", 4)}
            ),
            "sha256:base",
        ),
        (SNAPSHOT, "sha256:newer-base"),
    ):
        other = desired_notebooks(snapshot, SETTINGS.workloads, base)[0]
        assert other.environment != env and other.image != nb.image


def test_swarm_placement_is_part_of_what_runs_and_of_the_service_spec() -> None:
    swarm = {
        "AUTH_TOKEN": "t" * 20, "GITLAB_REPO_URL": "/srv/r.git", "BASE_DOMAIN": "nb.example.org",
        "RUNTIME": "swarm", "REGISTRY_HOST": "reg:5000",
    }  # fmt: skip
    (anywhere,) = desired_notebooks(SNAPSHOT, Settings.from_env(swarm).workloads, "sha256:base")
    placed = Settings.from_env({**swarm, "SWARM_PLACEMENT": "node.role==worker"})
    (on_workers,) = desired_notebooks(SNAPSHOT, placed.workloads, "sha256:base")
    # Moving notebooks to other nodes replaces them at the next reconcile.
    assert anywhere.launch.shape != on_workers.launch.shape
    runtime = SwarmRuntime(cast(Any, None), "nbgw", None)
    assert "Placement" not in runtime._spec(anywhere.launch)["TaskTemplate"]
    spec = runtime._spec(on_workers.launch)["TaskTemplate"]
    assert spec["Placement"] == {"Constraints": ["node.role==worker"]}
    # A work area's node comes on top of the operator's constraints.
    pinned = replace(on_workers.launch, node="n0de1d")
    constraints = runtime._spec(pinned)["TaskTemplate"]["Placement"]["Constraints"]
    assert constraints == ["node.role==worker", "node.id==n0de1d"]


def test_a_server_is_wanted_on_the_image_its_running_container_runs() -> None:
    """A hand-over cut short leaves a stopped container beside the running one: the server
    is renewed from the image it runs, whichever order the engine lists them in."""
    record = ServerRecord(
        name="alice-x", user_id=7, username="alice", namespace="g", project="p",
        branch="main", commit_sha="a" * 40, notebook="", image="",
        options={"defaultUrl": "/lab", "cpu_request": 1.0, "mem_request": "1G"},
        state=ServerState.RUNNING, message="", url="http://alice-x.localhost/",
        created_at="", updated_at="",
    )  # fmt: skip
    stopped = RunningServer("1", "old", "alice-x", "reg/x:old", 7, "exited")
    running = RunningServer("2", "new", "alice-x", "reg/x:new", 7, "running")
    for listed in ([stopped, running], [running, stopped]):
        (wanted,) = desired_servers([record], listed, {}, SETTINGS.workloads)
        assert wanted.launch.image == "reg/x:new"
