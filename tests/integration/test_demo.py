"""`make demo`, as the README's first lines tell a newcomer to run it, word for word: the
bundled example published and answering through Traefik, the demo user's server guarded, the
README's curl line answered by JupyterLab; then `make demo-stop` leaves nothing of it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.support.engine import docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "demo"  # scripts/demo.sh's GATEWAY_INSTANCE


def readme_line(starts: str) -> str:
    """The README's shell line that starts so, without its comment."""
    text = (ROOT / "README.md").read_text()
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", text, re.S)
    line = next(line for block in blocks for line in block.splitlines() if line.startswith(starts))
    return line.split("  #", 1)[0].strip()


def shell(command: str, timeout: float) -> str:
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def status_of(url: str, token: str = "") -> str:
    """The HTTP status of the notebook's /api, as curl (which resolves *.localhost) gets it."""
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *auth, f"{url}api"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout


def test_make_demo_publishes_the_example_and_make_demo_stop_removes_it(stack: Stack) -> None:
    demo = readme_line("make demo")
    assert demo == "make demo"
    try:
        printed = shell(demo, 1200)
        published = re.findall(r"<(http://[^>]+--[^>]+\.localhost:8080/)>", printed)
        assert len(published) >= 3, printed[-3000:]
        for url in published:
            assert status_of(url) == "200", url
        # The README's curl line, as it is written: JupyterLab's page.
        title = shell(readme_line("curl -sL http://intro--climate"), 60)
        assert "<title>" in title and "JupyterLab" in title, title
        # The demo user's server: guarded, theirs.
        (server,) = re.findall(r"^  (http://demo-examples-[^/]+/)$", printed, re.M)
        token = (ROOT / ".demo" / "gitlab-user").read_text().splitlines()[0]
        assert status_of(server) == "401"
        assert status_of(server, token) == "200"
    finally:
        shell("make demo-stop", 300)
    left = docker("ps", "-aq", "--filter", f"label=notebook-gateway.instance={INSTANCE}")
    assert left == "", left
    images = docker("images", "-q", "--filter", f"label=notebook-gateway.instance={INSTANCE}")
    assert images == "", images
