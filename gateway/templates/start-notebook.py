"""Start Jupyter inside a notebook-gateway container, opening one notebook (or none).

    python3 -c "$(cat start-notebook.py)" NOTEBOOK [UI]

UI is /lab (JupyterLab) or /tree (the Notebook interface). Runs with whatever Python the base
image has (3.8 or newer), using what is installed: JupyterLab, Notebook 7, or a bare
jupyter-server. Who may come in is decided by the proxy in front; Jupyter answers only requests
that carry the container's token (JUPYTER_TOKEN), which the proxy adds after its guard, so
nothing that bypasses the proxy gets an answer. Without a token it does not start.

Jupyter runs in this process when this Python has it: `jupyter lab` would start two more
interpreters (`jupyter`, then `jupyter-lab`) before the server's own imports begin.
"""

import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
from urllib.parse import quote

PORT = 8888
TOKEN_VARIABLE = "JUPYTER_TOKEN"
# A user server's image holds the commit here; its work area (a volume) is the working
# directory, and follows the commit as `git checkout` would (sync_work_area).
COMMIT_DIR = "/opt/notebook-gateway/commit"
STATE_DIR = ".notebook-gateway"  # in the work area; hidden from Jupyter's file browser


def _installed(module):
    return importlib.util.find_spec(module) is not None


def _server_major():
    try:
        from importlib.metadata import version

        return int(version("jupyter_server").split(".")[0])
    except Exception:
        return 2


def command(notebook, ui="/lab", token="", installed=_installed, server_major=_server_major):
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
    # On the command line, so no configuration file of the base image can turn it off.
    if server_major() >= 2:
        args.append("--IdentityProvider.token=" + token)
    else:
        args += ["--ServerApp.token=" + token, "--ServerApp.password="]
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


def _digest(path):
    """The content of a regular file, or a word for what else is there (None: nothing)."""
    if os.path.islink(path):
        return "symlink"
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path):
        return "not-a-file"
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _files(root):
    found = []
    for parent, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(parent, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return found


def _write(path, source):
    """Write a file whole or not at all, from `source` (a file object), in blocks: a commit's
    files may be as large as the container's memory."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".nbgw-")
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(source, out)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _copy(source, target):
    with open(source, "rb") as handle:
        _write(target, handle)
    os.chmod(target, 0o755 if os.access(source, os.X_OK) else 0o644)


def _remove(target, work):
    os.unlink(target)
    parent = os.path.dirname(target)
    while os.path.abspath(parent) != os.path.abspath(work):  # folders the commit emptied
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)


def sync_work_area(source, work, say=sys.stderr.write):
    """Bring the work area to the commit in `source` as `git checkout` brings a working tree:
    a file the user has not changed since the last commit follows the new one (written,
    changed or removed); a file the user changed, added or removed stays as the user left
    it. The last commit's files are remembered in STATE_DIR/manifest.json (empty on a new
    volume: every file of the commit is written). Returns the paths kept as the user's."""
    manifest = os.path.join(work, STATE_DIR, "manifest.json")
    try:
        with open(manifest, encoding="utf-8") as handle:
            before = json.load(handle)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        before = {}
    if not isinstance(before, dict):
        before = {}
    # The manifest is in the user's hands: only plain paths inside the work area count.
    before = {
        path: digest
        for path, digest in before.items()
        if isinstance(path, str)
        and not path.startswith("/")
        and all(part not in ("", ".", "..") for part in path.split("/"))
    }
    now = {path: _digest(os.path.join(source, path)) for path in _files(source)}
    kept = []
    for path in sorted(set(now) | set(before)):
        target = os.path.join(work, *path.split("/"))
        current = _digest(target)
        if current == now.get(path):
            continue
        if current != before.get(path):  # the user's version
            kept.append(path)
            if now.get(path) != before.get(path):
                say("notebook-gateway: kept your version of " + path + ";")
                say(" the commit changed it too\n")
            continue
        if path in now:
            _copy(os.path.join(source, *path.split("/")), target)
        else:
            _remove(target, work)
    _write(manifest, io.BytesIO(json.dumps({"files": now}, sort_keys=True).encode()))
    return kept


def main():
    # Kernels and terminals inherit the environment; they need not find the token there.
    token = os.environ.pop(TOKEN_VARIABLE, "")
    if not token:
        sys.stderr.write(
            "notebook-gateway: no " + TOKEN_VARIABLE + "; Jupyter would answer anyone who"
            " reaches this container, so it does not start\n"
        )
        sys.exit(2)
    if os.path.isdir(COMMIT_DIR):
        sync_work_area(COMMIT_DIR, os.getcwd())
    argv = command(sys.argv[1], *sys.argv[2:3], token=token)
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
