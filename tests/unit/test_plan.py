import random

from hypothesis import given
from hypothesis import strategies as st

from gateway.models import DesiredNotebook, Launch, ResourceLimits, RunningNotebook, serving
from gateway.naming import LABEL_CONTENT_HASH
from gateway.publish.plan import make_plan


def launch(path: str, entrypoint: str = "web", digest: str = "h1") -> Launch:
    # As desired.py makes them: the content hash is among the labels, so part of the shape.
    labels = {"traefik.http.routers.r.entrypoints": entrypoint, LABEL_CONTENT_HASH: digest}
    return Launch(
        f"c-{path}", f"img:{digest}", labels, "host", "net",
        "1000:100", ResourceLimits(2**30, 1.0, 512), router=f"c-{path}",
    )  # fmt: skip


def desired(path: str, digest: str = "h1") -> DesiredNotebook:
    return DesiredNotebook(
        "p",
        path,
        "c",
        digest,
        f"img:{digest}",
        f"c-{path}",
        "host",
        "url",
        (),
        launch(path, digest=digest),
    )


def running(
    path: str,
    digest: str = "h1",
    up: bool = True,
    name: str | None = None,
    cid: str | None = None,
    shape: str | None = None,
) -> RunningNotebook:
    return RunningNotebook(
        cid or f"id-{path}-{digest}",
        name or f"c-{path}",
        "p",
        path,
        "c",
        digest,
        "img",
        "url",
        up,
        "",
        f"c-{path}",
        launch(path, digest=digest).shape if shape is None else shape,
    )


def test_same_content_running_is_kept() -> None:
    plan = make_plan([desired("a")], [running("a")])
    assert [k.desired.path for k in plan.keep] == ["a"] and plan.empty


def test_changed_stopped_or_renamed_is_deployed_in_place_of_the_old() -> None:
    plan = make_plan(
        [desired("changed", "h2"), desired("stopped"), desired("renamed"), desired("new")],
        [running("changed"), running("stopped", up=False), running("renamed", name="old-name")],
    )
    assert sorted(d.desired.path for d in plan.deploy) == ["changed", "new", "renamed", "stopped"]
    replaced = {d.desired.path: [c.path for c in d.replaces] for d in plan.deploy}
    assert replaced == {
        "changed": ["changed"],
        "new": [],
        "renamed": ["renamed"],
        "stopped": ["stopped"],
    }
    assert plan.remove == []


def test_a_container_shaped_otherwise_is_replaced_though_its_content_is_the_same() -> None:
    """Started under other settings (here another Traefik entrypoint), or by a gateway that
    gave it no shape at all: the next plan replaces it, one hand-over each."""
    other = running("a", shape=launch("a", entrypoint="websecure").shape)
    unshaped = running("b", shape="")
    plan = make_plan([desired("a"), desired("b")], [other, unshaped])
    assert plan.keep == []
    assert {d.desired.path: d.replaces for d in plan.deploy} == {"a": (other,), "b": (unshaped,)}


def test_a_shape_does_not_depend_on_the_commit_nor_on_a_token() -> None:
    base = launch("a")
    moved = Launch(**{**base.__dict__, "labels": {**base.labels, "notebook-gateway.commit": "x"}})
    assert moved.shape == base.shape  # an unrelated commit to the project keeps it running
    limited = Launch(**{**base.__dict__, "limits": ResourceLimits(2**30, 1.0, 128)})
    assert limited.shape != base.shape


def test_gone_notebooks_and_duplicates_are_removed() -> None:
    duplicate = running("a", cid="second")
    plan = make_plan([desired("a")], [running("a"), duplicate, running("gone")])
    assert [k.current.id for k in plan.keep] == ["id-a-h1"]
    assert sorted(c.id for c in plan.remove) == ["id-gone-h1", "second"]


paths = st.sampled_from(["a", "b", "c", "d"])


@given(
    st.lists(st.tuples(paths, st.sampled_from(["h1", "h2"])), unique_by=lambda t: t[0]),
    st.lists(st.tuples(paths, st.sampled_from(["h1", "h2"]), st.booleans()), max_size=6),
)
def test_every_notebook_and_container_is_accounted_for_once(
    wanted: list[tuple[str, str]], actual: list[tuple[str, str, bool]]
) -> None:
    containers = [running(p, h, up, cid=f"{i}") for i, (p, h, up) in enumerate(actual)]
    plan = make_plan([desired(p, h) for p, h in wanted], containers)
    assert sorted(
        [k.desired.path for k in plan.keep] + [d.desired.path for d in plan.deploy]
    ) == sorted(p for p, _ in wanted)
    seen = (
        [k.current.id for k in plan.keep]
        + [c.id for d in plan.deploy for c in d.replaces]
        + [c.id for c in plan.remove]
    )
    assert sorted(seen) == sorted(c.id for c in containers)
    for keep in plan.keep:
        assert keep.current.running and keep.current.content_hash == keep.desired.content_hash


def test_a_notebook_in_the_middle_of_a_handover_is_served_by_the_new_version() -> None:
    old = running("a", "h1", up=False)
    new = running("a", "h2", name="c-a-next-0a1b2c")
    other = running("b")
    assert serving([old, new, other]) == {("p", "a"): new, ("p", "b"): other}
    # Neither running: the one under the notebook's name stands for it.
    stopped_new = running("a", "h2", up=False, name="c-a-next-0a1b2c")
    assert serving([stopped_new, old]) == {("p", "a"): old}


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.booleans(), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    st.randoms(),
)
def test_the_container_standing_for_a_notebook_does_not_depend_on_the_order(
    actual: list[tuple[str, bool, bool]], order: random.Random
) -> None:
    containers = [
        running(p, up=up, name=f"c-{p}" if named else f"c-{p}-next-{i}", cid=f"{i}")
        for i, (p, up, named) in enumerate(actual)
    ]
    chosen = serving(containers)
    assert set(chosen) == {("p", p) for p, _, _ in actual}
    shuffled = order.sample(containers, len(containers))
    for key, notebook in serving(shuffled).items():
        # The same standing: running first, then under its own name.
        assert (notebook.running, notebook.name == notebook.server) == (
            chosen[key].running,
            chosen[key].name == chosen[key].server,
        )
        if any(c.running for c in containers if (c.project, c.path) == key):
            assert notebook.running
