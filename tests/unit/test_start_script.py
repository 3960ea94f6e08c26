"""The script that starts Jupyter inside every notebook image."""

import importlib.util
from types import ModuleType

import pytest

from gateway.dockerfile import start_script


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
