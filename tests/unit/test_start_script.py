"""The script that starts Jupyter inside every notebook image."""

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.publish.dockerfile import start_script


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    path = tmp_path_factory.mktemp("script") / "start_notebook.py"
    path.write_bytes(start_script())
    spec = importlib.util.spec_from_file_location("start_notebook", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lab_opens_the_notebook(script: ModuleType) -> None:
    args = script.command(
        "sub/Análise de dados.ipynb", installed=lambda m: True, server_major=lambda: 2
    )
    assert args[:2] == ["jupyter", "lab"]
    assert "--LabApp.default_url=/lab/tree/sub/An%C3%A1lise%20de%20dados.ipynb" in args
    assert "--IdentityProvider.token=" in args
    assert "--ServerApp.ip=0.0.0.0" in args and "--ServerApp.port=8888" in args


def test_notebook_seven_then_bare_server(script: ModuleType) -> None:
    notebook = script.command(
        "a.ipynb", installed=lambda m: m == "notebook", server_major=lambda: 2
    )
    assert notebook[:2] == ["jupyter", "notebook"]
    assert "--JupyterNotebookApp.default_url=/notebooks/a.ipynb" in notebook
    server = script.command("a.ipynb", installed=lambda m: False, server_major=lambda: 1)
    assert server[:2] == ["jupyter", "server"]
    assert "--ServerApp.token=" in server and "--IdentityProvider.token=" not in server


def test_the_ui_choice_and_no_notebook(script: ModuleType) -> None:
    both = {"jupyterlab", "notebook"}
    lab = script.command("", "/lab", installed=lambda m: m in both, server_major=lambda: 2)
    assert lab[:2] == ["jupyter", "lab"] and "--LabApp.default_url=/lab" in lab
    classic = script.command(
        "a.ipynb", "/tree", installed=lambda m: m in both, server_major=lambda: 2
    )
    assert classic[:2] == ["jupyter", "notebook"]
    assert "--JupyterNotebookApp.default_url=/notebooks/a.ipynb" in classic
    # Without Notebook 7, /tree falls back to JupyterLab rather than failing.
    lab_only = script.command(
        "", "/tree", installed=lambda m: m == "jupyterlab", server_major=lambda: 2
    )
    assert lab_only[:2] == ["jupyter", "lab"]


def test_jupyter_runs_in_this_process_when_this_python_has_it(script: ModuleType) -> None:
    # pytest's own console script stands in for jupyter-lab: found in this Python, loaded.
    from importlib.metadata import entry_points

    (expected,) = entry_points(group="console_scripts", name="pytest")
    assert script._console_script("pytest") is expected.load()
    assert script._console_script("jupyter-no-such-app") is None


def test_the_slow_format_checker_is_not_imported(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "rfc3987_syntax", raising=False)
    script._skip_slow_imports()
    with pytest.raises(ImportError):
        importlib.import_module("rfc3987_syntax")


# -- the work area follows the commit as `git checkout` would ---------------------------------


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root but the gateway's own state."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".notebook-gateway" not in p.parts
    }


def commit(root: Path, files: dict[str, bytes]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_new_work_area_is_filled_from_the_commit(script: ModuleType, tmp_path: Path) -> None:
    source = commit(tmp_path / "c1", {"a.ipynb": b"A", "data/x.csv": b"1,2"})
    work = tmp_path / "work"
    work.mkdir()
    assert script.sync_work_area(str(source), str(work)) == []
    assert tree(work) == {"a.ipynb": b"A", "data/x.csv": b"1,2"}


def test_the_users_changes_stay_and_the_rest_follows_the_commit(
    script: ModuleType, tmp_path: Path
) -> None:
    first = {
        "edited.ipynb": b"v1",
        "same.ipynb": b"s",
        "updated.py": b"u1",
        "removed/old.txt": b"o",
        "deleted-by-user.txt": b"d",
        "both.ipynb": b"b1",
    }
    work = tmp_path / "work"
    work.mkdir()
    script.sync_work_area(str(commit(tmp_path / "c", first)), str(work))
    (work / "edited.ipynb").write_bytes(b"mine")
    (work / "both.ipynb").write_bytes(b"mine too")
    (work / "deleted-by-user.txt").unlink()
    (work / "new-by-user.txt").write_bytes(b"n")
    second = {
        "edited.ipynb": b"v1",
        "same.ipynb": b"s",
        "updated.py": b"u2",
        "deleted-by-user.txt": b"d",
        "both.ipynb": b"b2",
        "added/new.ipynb": b"+",
    }
    said: list[str] = []
    kept = script.sync_work_area(str(commit(tmp_path / "c", second)), str(work), said.append)
    assert tree(work) == {
        "edited.ipynb": b"mine",  # changed by the user: theirs
        "same.ipynb": b"s",
        "updated.py": b"u2",  # unchanged by the user: the new commit's
        "both.ipynb": b"mine too",  # changed on both sides: theirs, and they are told
        "added/new.ipynb": b"+",
        "new-by-user.txt": b"n",  # the user's own file
    }  # removed/ went with the commit; the file the user deleted stays deleted
    assert not (work / "removed").exists()
    assert sorted(kept) == ["both.ipynb", "deleted-by-user.txt", "edited.ipynb"]
    assert "both.ipynb" in "".join(said) and "edited.ipynb" not in "".join(said)
    # Starting again at the same commit changes nothing.
    before = tree(work)
    script.sync_work_area(str(tmp_path / "c"), str(work))
    assert tree(work) == before


contents = st.dictionaries(st.sampled_from(["a", "b", "d/c", "d/e"]), st.sampled_from([b"1", b"2"]))


@settings(max_examples=60, deadline=None)
@given(old=contents, new=contents, edits=contents, deletions=st.sets(st.sampled_from(["a", "d/c"])))
def test_sync_is_a_three_way_merge_that_never_loses_the_users_edits(
    script: ModuleType,
    tmp_path_factory: pytest.TempPathFactory,
    old: dict[str, bytes],
    new: dict[str, bytes],
    edits: dict[str, bytes],
    deletions: set[str],
) -> None:
    root = tmp_path_factory.mktemp("merge")
    work = root / "work"
    work.mkdir()
    script.sync_work_area(str(commit(root / "old", old)), str(work))
    for name, data in edits.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(b"user " + data)
    for name in deletions - set(edits):
        (work / name).unlink(missing_ok=True)
    mine = tree(work)
    script.sync_work_area(str(commit(root / "new", new)), str(work))
    after = tree(work)
    for name in set(old) | set(new) | set(mine):
        if mine.get(name) != old.get(name):  # the user's: exactly as they left it
            assert after.get(name) == mine.get(name), name
        else:  # untouched by the user: the new commit's
            assert after.get(name) == new.get(name), name


def test_a_forged_manifest_cannot_reach_outside_the_work_area(
    script: ModuleType, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    work = tmp_path / "work"
    (work / ".notebook-gateway").mkdir(parents=True)
    digest = script._digest(str(outside))
    forged = {"files": {"../outside.txt": digest, "/etc/hostname": digest, "a": None}}
    (work / ".notebook-gateway" / "manifest.json").write_text(json.dumps(forged))
    script.sync_work_area(str(commit(tmp_path / "c", {"a": b"A"})), str(work))
    assert outside.read_bytes() == b"precious"
    assert tree(work) == {"a": b"A"}
