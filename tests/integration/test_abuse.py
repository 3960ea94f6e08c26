"""Hostile repositories and notebooks: escapes, huge inputs, injected names, fork bombs and
memory hogs. Limits hold; the host, the gateway and the other notebooks stay healthy."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.conftest import MakeGateway, job_summary
from tests.support import jupyter
from tests.support.engine import docker, owned_containers, owned_images
from tests.support.gitrepo import GitRemote, Symlink, git, notebook
from tests.support.package_index import package_index

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

HOSTILE_NAMES = [
    "quote\"'.ipynb",
    "$(id) ${HOME} `uname`.ipynb",
    "--help.ipynb",
    "new\nline.ipynb",
    "back\\slash ; rm -rf.ipynb",
    "Ünïcödé 名前.ipynb",
]


async def test_repositories_that_try_to_escape_or_overflow_are_refused(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit(
        {
            "other/secret.txt": b"not for the image\n",
            "hostile/a.ipynb": notebook("print(1)"),
            "hostile/passwd": Symlink("/etc/passwd"),
            "hostile/sibling": Symlink("../other/secret.txt"),
            "huge/a.ipynb": notebook("print(1)"),
        }
    )
    # A 200 MB file, and a project of 10,000 files.
    big = remote.work / "huge" / "data.bin"
    with big.open("wb") as handle:
        handle.truncate(200 * 1024**2)
    many = remote.work / "many"
    many.mkdir()
    (many / "a.ipynb").write_bytes(notebook("print(1)"))
    for i in range(10_000):
        (many / f"f{i:05}.txt").write_text(str(i))
    git("add", "-A", cwd=remote.work)
    git("commit", "--quiet", "-m", "Big and many", cwd=remote.work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=remote.work)

    gateway = await make_gateway()
    expected = {
        "hostile": ["passwd: symlink to '/etc/passwd' points outside the project folder",
                    "sibling: symlink to '../other/secret.txt' points outside the project folder"],
        "huge": ["data.bin: 209715200 bytes is over the 104857600-byte limit"],
        "many": ["10001 files, over the 5000-file limit"],
    }  # fmt: skip
    for project, problems in expected.items():
        status, body = await gateway.notify(project)
        assert status == 422, job_summary(body)
        assert body["error"]["code"] == "invalid_repository"
        found = body["error"]["detail"]["problems"]
        for problem in problems:
            assert any(problem in line for line in found), (problem, found)
    assert owned_containers(gateway.instance) == []
    assert owned_images(gateway.instance) == []
    assert remote.read("URL.md") is None


async def test_hostile_names_cannot_inject_and_still_work(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    project = "names & $(x) 'q'"
    remote.commit(
        {f"{project}/{name}": notebook(f"print({i})") for i, name in enumerate(HOSTILE_NAMES)}
    )
    gateway = await make_gateway()
    body = await gateway.publish(project)
    urls = {nb["name"]: nb["url"] for nb in body["notebooks"]}
    assert set(urls) == set(HOSTILE_NAMES)
    assert all(re.fullmatch(r"http://[a-z0-9-]+\.[a-z0-9.-]+:\d+/", url) for url in urls.values())

    async with jupyter.session() as http:
        for i, name in enumerate(HOSTILE_NAMES):
            # Jupyter serves the notebook under its exact name, and its code runs.
            async with http.get(urls[name] + "api/contents/") as response:
                listed = [item["name"] for item in (await response.json())["content"]]
            assert listed == [name], listed
            assert await jupyter.execute(http, urls[name], f"print({i})") == f"{i}\n"
    for container in owned_containers(gateway.instance):
        labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", container))
        assert labels["notebook-gateway.project"] == project
        assert labels["notebook-gateway.notebook"] in HOSTILE_NAMES
    # URL.md: one table row per notebook, nothing escaping its cell.
    rows = [
        r for r in (remote.read("URL.md") or "").splitlines() if r.startswith("| ") and "<http" in r
    ]
    assert len(rows) == len(HOSTILE_NAMES)
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 5 for row in rows)


def cgroup_file(container_id: str, controller: str, *names: str) -> str:
    """A counter of the container's cgroup (v1 with the cgroupfs driver, or v2)."""
    for root in (
        Path(f"/sys/fs/cgroup/{controller}/docker/{container_id}"),
        Path(f"/sys/fs/cgroup/docker/{container_id}"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope"),
    ):
        for name in names:
            if (root / name).exists():
                return (root / name).read_text()
    raise AssertionError(f"no cgroup file {names} for {container_id}")


def last_number(counters: str) -> int:
    """pids.events "max 3", memory.oom_control or memory.events "... oom_kill 1"."""
    return int(counters.split()[-1])


FORK_BOMB = """
import os, time, errno
children = []
try:
    while len(children) < 10000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    print("refused after", len(children), errno.errorcode.get(exc.errno))
finally:
    for pid in children:
        os.kill(pid, 9)
    for pid in children:
        os.waitpid(pid, 0)
"""

MEMORY_HOG = """
blocks = []
try:
    while True:
        blocks.append(bytearray(32 * 1024 * 1024))
except MemoryError:
    print("refused at", len(blocks) * 32, "MiB")
"""


async def test_fork_bombs_and_memory_hogs_hit_the_limits(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"bomb/a.ipynb": notebook("print(1)"), "calm/b.ipynb": notebook("print(2)")})
    gateway = await make_gateway(NOTEBOOK_PIDS_LIMIT="128", NOTEBOOK_MEMORY_LIMIT="384m")
    answers = await asyncio.gather(gateway.notify("bomb"), gateway.notify("calm"))
    assert all(status == 200 for status, _ in answers), answers
    bomb_url, calm_url = (body["notebooks"][0]["url"] for _, body in answers)
    by_project = {
        json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", c))[
            "notebook-gateway.project"
        ]: c
        for c in owned_containers(gateway.instance)
    }
    bomb = docker("inspect", "--format", "{{.Id}}", by_project["bomb"])
    # Never set a bomb off without the limits in place.
    assert (
        docker("inspect", "--format", "{{.HostConfig.PidsLimit}} {{.HostConfig.Memory}}", bomb)
        == f"128 {384 * 2**20}"
    )

    async with jupyter.session() as http:
        output = await jupyter.run_hostile(http, bomb_url, FORK_BOMB)
        match = re.match(r"refused after (\d+) EAGAIN", output)
        assert match and int(match.group(1)) < 128, output
        # The pids controller counted refused forks ("max N").
        assert last_number(cgroup_file(bomb, "pids", "pids.events")) > 0

        # The kernel is killed at the limit (or Python is refused memory first).
        output = await jupyter.run_hostile(http, bomb_url, MEMORY_HOG)
        assert output == "<kernel died>" or output.startswith("refused at"), output
        peak = int(cgroup_file(bomb, "memory", "memory.max_usage_in_bytes", "memory.peak"))
        assert peak <= 384 * 2**20
        # "oom_kill N" ends memory.oom_control (cgroup v1) and memory.events (v2).
        assert last_number(cgroup_file(bomb, "memory", "memory.oom_control", "memory.events")) > 0

        # The other notebook, the gateway and this notebook's server are fine.
        assert await jupyter.execute(http, calm_url, "print('calm')") == "calm\n"
        health = await gateway.client.get("/health")
        assert health.status == 200
        for _ in range(60):
            try:
                async with http.get(bomb_url + "api") as response:
                    if response.status == 200:
                        break
            except Exception:
                pass
            await asyncio.sleep(1)
        else:
            raise AssertionError("the notebook server did not come back")


# Build backends that a requirements.txt may make a build run (pip loads them to build).
BUILD_MEMORY_HOG = "hog = bytearray(2 * 2**30)  # filled with zeros: every page is touched"
BUILD_FORK_BOMB = """
import os, time
while True:
    if os.fork() == 0:
        time.sleep(300)
        os._exit(0)
"""


async def test_builds_run_the_repository_code_within_their_own_limits(
    make_gateway: MakeGateway, remote: GitRemote, tmp_path: Path
) -> None:
    """A requirements.txt that runs code when installed (a package whose build backend
    allocates, or forks, without end) fails its own build with the reason, beside a build
    that installs fine; the gateway stays healthy and no build container is left."""
    with package_index(tmp_path / "index") as index:
        index.sdist("nbgw-hostile-hog", BUILD_MEMORY_HOG)
        index.sdist("nbgw-hostile-bomb", BUILD_FORK_BOMB)
        index.wheel("nbgw-benign", "ANSWER = 42\n")
        remote.commit(
            {
                "hog/a.ipynb": notebook("print(1)"),
                "hog/requirements.txt": index.requirements("nbgw-hostile-hog"),
                "bomb/a.ipynb": notebook("print(2)"),
                "bomb/requirements.txt": index.requirements("nbgw-hostile-bomb"),
                "fine/a.ipynb": notebook("print(3)"),
                "fine/requirements.txt": index.requirements("nbgw-benign"),
            }
        )
        # The bomb's children hold its output open: the build hangs at the limit until its
        # time is up, as a real one would.
        gateway = await make_gateway(
            BUILD_MEMORY_LIMIT="256m",
            BUILD_PIDS_LIMIT="64",
            BUILD_TIMEOUT="40",
            BUILD_CONCURRENCY="3",
        )
        projects = ("hog", "bomb", "fine")
        answers = dict(
            zip(projects, await asyncio.gather(*map(gateway.notify, projects)), strict=True)
        )
    status, body = answers["fine"]
    assert status == 200, job_summary(body)
    (fine,) = owned_containers(gateway.instance)
    assert docker("exec", fine, "python3", "-c", "import nbgw_benign; print(nbgw_benign.ANSWER)")
    reasons = {}
    for project in ("hog", "bomb"):
        status, body = answers[project]
        assert status == 422, job_summary(body)
        (failed,) = body["error"]["detail"]["job"]["notebooks"]
        assert failed["reason"] == "build_failed", failed
        reasons[project] = failed["message"]
    assert "ran out of memory (the build's limit is 256 MiB)" in reasons["hog"], reasons
    assert "installing the requirements did not finish within 40 s" in reasons["bomb"], reasons
    assert "could not start more processes (the build's limit is 64)" in reasons["bomb"], reasons
    health = await gateway.client.get("/health")
    assert health.status == 200, await health.text()
    # No install container is left, and none of its own labels went into an image.
    left = docker(
        "ps", "-aq", "--filter", f"label=notebook-gateway.instance={gateway.instance}",
        "--filter", "label=notebook-gateway.kind=environment",
    )  # fmt: skip
    assert left == ""
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", fine))
    assert labels["notebook-gateway.kind"] == "published"
