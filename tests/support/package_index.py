"""A package index of a test's own, which image builds reach from Docker's default bridge: it
serves source distributions whose build backend runs whatever code the test gives it (what a
hostile requirements.txt can make a build do), and plain wheels."""

from __future__ import annotations

import functools
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.engine import docker

VERSION = "1.0"


class PackageIndex:
    def __init__(self, root: Path, host: str, port: int) -> None:
        self.root = root
        self.host = host
        self.port = port

    def requirements(self, *names: str) -> bytes:
        """A requirements.txt that installs `names` from this index alone."""
        lines = [
            "--no-index",
            f"--find-links http://{self.host}:{self.port}/",
            f"--trusted-host {self.host}",
            *(f"{name}=={VERSION}" for name in names),
        ]
        return ("\n".join(lines) + "\n").encode()

    def sdist(self, name: str, code: str) -> None:
        """A source distribution whose in-tree build backend runs `code` when pip loads it."""
        stem = f"{_module(name)}-{VERSION}"
        files = {
            "pyproject.toml": (
                '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
                f'\n[project]\nname = "{name}"\nversion = "{VERSION}"\n'
            ),
            "backend.py": code + "\n\ndef build_wheel(*args, **kwargs):\n    raise SystemExit(1)\n",
            "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {VERSION}\n",
        }
        with tarfile.open(self.root / f"{stem}.tar.gz", "w:gz") as archive:
            for path, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f"{stem}/{path}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))

    def wheel(self, name: str, source: str) -> None:
        """A pure-Python wheel holding one module, named after the package."""
        module = _module(name)
        info = f"{module}-{VERSION}.dist-info"
        files = {
            f"{module}.py": source,
            f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {VERSION}\n",
            f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        }
        files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
        with zipfile.ZipFile(self.root / f"{module}-{VERSION}-py3-none-any.whl", "w") as archive:
            for path, text in files.items():
                archive.writestr(path, text)


@contextmanager
def package_index(root: Path) -> Iterator[PackageIndex]:
    """Serve `root` on every address of this host; builds find it at the default bridge's
    gateway."""
    root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    bridge = docker(
        "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"
    )
    try:
        yield PackageIndex(root, bridge, int(server.server_address[1]))
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _module(name: str) -> str:
    return name.replace("-", "_")
