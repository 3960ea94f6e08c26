"""An update costs what changed, counted in the Docker engine's own events: no change touches
nothing, one changed notebook builds, pushes and restarts exactly one."""

from __future__ import annotations

import time

import pytest

from gateway import naming
from tests.conftest import EngineEvent, MakeGateway, engine_events, job_summary
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

PROJECTS = {
    "climate": ["a.ipynb", "b.ipynb", "deep/c.ipynb"],
    "genomics": ["d.ipynb", "e.ipynb"],
}


def of(events: list[EngineEvent], kind: str, *actions: str) -> list[EngineEvent]:
    return [e for e in events if e.type == kind and e.action in actions]


async def test_updates_touch_only_what_changed(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    files: dict[str, bytes | None] = {
        f"{project}/{path}": notebook(f"print({path!r})")
        for project, paths in PROJECTS.items()
        for path in paths
    }
    files["genomics/requirements.txt"] = b"# none yet\n"
    remote.commit(files)
    gateway = await make_gateway()
    for project in PROJECTS:
        body = await gateway.publish(project)

    # A notification without changes: not one container or image event.
    since = time.time()
    for project in PROJECTS:
        body = await gateway.publish(project)
        assert {nb["action"] for nb in body["notebooks"]} == {"unchanged"}, job_summary(body)
    events = engine_events(gateway.instance, since, time.time() + 1)
    assert events == [], events

    # One notebook changes: one image built and pushed, one container replaced; the
    # project's environment and its other notebooks are left alone.
    remote.commit({"climate/deep/c.ipynb": notebook("print('c, again')")})
    since = time.time()
    body = await gateway.publish("climate")
    until = time.time() + 1
    actions = {nb["name"]: nb["action"] for nb in body["notebooks"]}
    assert actions == {"a.ipynb": "unchanged", "b.ipynb": "unchanged", "deep/c.ipynb": "built"}
    image = next(nb["image"] for nb in body["notebooks"] if nb["name"] == "deep/c.ipynb")
    events = engine_events(gateway.instance, since, until)
    assert [e.name for e in of(events, "image", "tag")] == [image], events
    # The engine names the repository it pushed, without the tag.
    assert [e.name for e in of(events, "image", "push")] == [image.rpartition(":")[0]], events
    ours = [e for e in events if e.type == "container" and naming.LABEL_CONTAINER in e.labels]
    assert len(of(ours, "container", "create")) == 1, ours
    assert len(of(ours, "container", "destroy")) == 1, ours
    assert {e.labels[naming.LABEL_NOTEBOOK] for e in ours} == {"deep/c.ipynb"}, ours
