"""The README's `.gitlab-ci.yml` job, word for word: valid by GitLab's CI schema, and its script
run as a runner runs it (`sh -e`, with curl) against a live gateway behind a private CA."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiohttp import web

from tests.conftest import Gateway, MakeGateway
from tests.support.engine import docker, owned_containers
from tests.support.gitrepo import GitRemote, notebook
from tests.support.stack import free_port

README = Path(__file__).parents[2] / "README.md"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def readme_ci_job() -> str:
    """The first yaml block after the README says what to add to `.gitlab-ci.yml`."""
    text = README.read_text()
    after = text[text.index("`.gitlab-ci.yml`:") :]
    found = re.search(r"```yaml\n(.*?)```", after, re.S)
    assert found, "the README shows no .gitlab-ci.yml job"
    return found.group(1)


def gitlab_ci_errors(document: str, tmp_path: Path) -> str:
    """What GitLab's CI schema (check-jsonschema's vendored copy) says is wrong; "" if valid."""
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(document)
    checked = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.gitlab-ci", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


def test_the_job_is_valid_by_gitlabs_ci_schema(tmp_path: Path) -> None:
    job = readme_ci_job()
    assert gitlab_ci_errors(job, tmp_path) == ""
    # The schema does refuse what GitLab refuses: a script that is not a string or a list.
    broken = yaml.safe_load(job)
    broken["publish-notebooks"]["script"] = {"run": "curl"}
    assert "script" in gitlab_ci_errors(yaml.safe_dump(broken), tmp_path)


def script_of(job: str) -> str:
    """The job's script lines joined as a runner joins them for its shell."""
    (definition,) = yaml.safe_load(job).values()
    lines: list[str] = definition["script"]
    return "\n".join(lines)


async def run_script(script: str, env: dict[str, str]) -> tuple[int, str]:
    """`sh -e` with the job's variables, as GitLab's runner runs it in curlimages/curl."""
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-e",
        "-c",
        script,
        env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(600):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def served_projects(gateway: Gateway) -> dict[str, list[str]]:
    response = await gateway.client.get("/status", headers=gateway.auth())
    status: dict[str, Any] = await response.json()
    return {p["name"]: [nb["state"] for nb in p["notebooks"]] for p in status["projects"]}


def container_name(container: str) -> str:
    return docker("inspect", "--format", "{{.Name}}", container)


@pytest.fixture
def private_ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    bundle = tmp_path / "gateway-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return ca, bundle


async def serve_tls(gateway: Gateway, ca: trustme.CA) -> tuple[web.TCPSite, str]:
    """The same gateway also on HTTPS, with a certificate from the private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    port = free_port()
    runner = gateway.client.server.runner
    assert runner is not None
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context)
    await site.start()
    return site, f"https://127.0.0.1:{port}"


async def test_the_job_publishes_every_folder_and_fails_only_at_the_end(
    make_gateway: MakeGateway, remote: GitRemote, private_ca: tuple[trustme.CA, Path]
) -> None:
    ca, bundle = private_ca
    remote.commit(
        {
            "My Project/a.ipynb": notebook("print('spaces')"),
            "gone/b.ipynb": notebook("print('soon deleted')"),
        }
    )
    gateway = await make_gateway()
    site, url = await serve_tls(gateway, ca)
    script = script_of(readme_ci_job())
    variables = {
        "GATEWAY_URL": url,
        "AUTH_TOKEN": gateway.settings.auth_token.get_secret_value(),
        "CURL_CA_BUNDLE": str(bundle),  # the CI/CD variable of type File the README names
    }
    try:
        # Without the private CA, curl does not trust the gateway (its error 60).
        code, output = await run_script(script, {**variables, "CURL_CA_BUNDLE": ""})
        assert code == 60, output

        code, output = await run_script(script, variables)
        assert code == 0, output
        assert '"state": "succeeded"' in output or '"state":"succeeded"' in output, output
        assert await served_projects(gateway) == {
            "My Project": ["running"],
            "gone": ["running"],
        }

        # A folder deleted, one with a quote and a backslash added, one that cannot build.
        remote.commit(
            {
                "gone": None,
                'Bob\'s "notes" \\ 2/c.ipynb': notebook("print('quotes')"),
                "broken/bad.ipynb": b"{ not json",
            }
        )
        code, output = await run_script(script, variables)
        # The job fails (curl's exit for an HTTP error), showing the gateway's reason...
        assert code == 22, output
        assert "1 project(s) failed: broken:" in output and "bad.ipynb" in output, output
        # ...and every other project was brought to the branch all the same.
        projects = await served_projects(gateway)
        assert projects.get('Bob\'s "notes" \\ 2') == ["running"], projects
        assert projects.get("My Project") == ["running"], projects
        assert "gone" not in projects and projects.get("broken") == ["failed"], projects
        assert not [c for c in owned_containers(gateway.instance) if "gone" in container_name(c)]
        url_md = remote.read("URL.md") or ""
        assert "My Project" in url_md and "notes" in url_md and "gone" not in url_md, url_md
    finally:
        await site.stop()
