"""Start Jupyter on one notebook inside a notebook-gateway image.

Runs with whatever Python the base image has (3.8 or newer): JupyterLab when installed,
else Notebook 7, else a bare jupyter-server. Authentication is left to the proxy in front.
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


def command(notebook, installed=_installed, server_major=_server_major):
    path = quote(notebook)
    # The front-end application's own default_url wins over the server's: set both.
    if installed("jupyterlab"):
        app, app_class, url = "lab", "LabApp", "/lab/tree/" + path
    elif installed("notebook"):
        app, app_class, url = "notebook", "JupyterNotebookApp", "/notebooks/" + path
    else:
        app, app_class, url = "server", "ServerApp", "/api/contents/" + path
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


def main():
    argv = command(sys.argv[1])
    if shutil.which(argv[0]) is None:
        sys.stderr.write(
            "notebook-gateway: this image has no `jupyter` command; BASE_IMAGE must provide "
            "jupyter-server (for example quay.io/jupyter/base-notebook)\n"
        )
        sys.exit(127)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
