"""Start Jupyter inside a notebook-gateway image, opening one notebook (or none).

    start-notebook.py NOTEBOOK [UI]

UI is /lab (JupyterLab) or /tree (the Notebook interface). Runs with whatever Python the base
image has (3.8 or newer), using what is installed: JupyterLab, Notebook 7, or a bare
jupyter-server. Authentication is left to the proxy in front.

Jupyter runs in this process when this Python has it: `jupyter lab` would start two more
interpreters (`jupyter`, then `jupyter-lab`) before the server's own imports begin.
"""

import importlib.util
import os
import shutil
import sys
from urllib.parse import quote

PORT = 8888


def _installed(module):
    return importlib.util.find_spec(module) is not None


def _server_major():
    try:
        from importlib.metadata import version

        return int(version("jupyter_server").split(".")[0])
    except Exception:
        return 2


def command(notebook, ui="/lab", installed=_installed, server_major=_server_major):
    path = quote(notebook)
    classic = ui == "/tree" and installed("notebook")
    # The front-end application's own default_url wins over the server's: set both.
    if installed("jupyterlab") and not classic:
        app, app_class = "lab", "LabApp"
        url = "/lab/tree/" + path if notebook else "/lab"
    elif installed("notebook"):
        app, app_class = "notebook", "JupyterNotebookApp"
        url = "/notebooks/" + path if notebook else "/tree"
    else:
        app, app_class = "server", "ServerApp"
        url = "/api/contents/" + path if notebook else "/api"
    args = [
        "jupyter",
        app,
        "--ServerApp.ip=0.0.0.0",
        "--ServerApp.port=" + str(PORT),
        "--ServerApp.open_browser=False",
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.root_dir=" + os.getcwd(),
        "--ServerApp.default_url=" + url,
        "--" + app_class + ".default_url=" + url,
    ]
    if server_major() >= 2:
        args.append("--IdentityProvider.token=")
    else:
        args += ["--ServerApp.token=", "--ServerApp.password="]
    return args


def _console_script(name):
    """The function behind console script `name` in this Python, or None."""
    try:
        from importlib.metadata import entry_points

        found = entry_points()
        if hasattr(found, "select"):
            scripts = found.select(group="console_scripts", name=name)
        else:  # Python 3.8 and 3.9
            scripts = [e for e in found.get("console_scripts", ()) if e.name == name]
        for script in scripts:
            return script.load()
    except Exception:
        pass
    return None


def _skip_slow_imports():
    """jsonschema imports every format checker it finds; rfc3987-syntax builds some 35 Earley
    parsers when imported (about a second of processor time), for the iri formats that no
    Jupyter schema uses. Without it jsonschema leaves those formats unchecked. Kernels are
    other processes and can still import it."""
    sys.modules.setdefault("rfc3987_syntax", None)


def main():
    argv = command(sys.argv[1], *sys.argv[2:3])
    name = "jupyter-" + argv[1]
    _skip_slow_imports()  # before the script's module is loaded
    script = _console_script(name)
    if script is not None:
        sys.argv = [name, *argv[2:]]
        sys.exit(script())
    if shutil.which(argv[0]) is None:
        sys.stderr.write(
            "notebook-gateway: this image has no `jupyter` command; BASE_IMAGE must provide "
            "jupyter-server (for example quay.io/jupyter/base-notebook)\n"
        )
        sys.exit(127)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
