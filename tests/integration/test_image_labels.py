"""The engine reads the labels our Dockerfiles carry back exactly, and the notebook lands
under its own name, whatever it is called."""

from __future__ import annotations

import json
from typing import IO

import aiodocker
import pytest

from gateway import naming
from gateway.adapters.images import DockerEngine
from gateway.models import BuildLimits, ContextFile
from gateway.publish.context_tar import write_context_tar
from gateway.publish.dockerfile import WORKDIR, api_labels, render_dockerfile
from tests.conftest import Stack
from tests.support.engine import docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

NAMES = [
    'quote" ]\nRUN touch /pwned #.ipynb',  # a line break: its label goes through the API
    '$(id) ${HOME} $HOME "quoted" \\back\\slash\\ end\\.ipynb',
    "Análise de dados — 数据.ipynb",
    "tab\tinside.ipynb",
]


def no_blobs(blob: str) -> IO[bytes]:
    raise AssertionError(f"the context has literal files only, not {blob}")


async def test_labels_and_command_survive_any_notebook_name(stack: Stack, instance: str) -> None:
    async with aiodocker.Docker() as client:
        engine = DockerEngine(client, instance)
        for number, name in enumerate(NAMES):
            labels = {
                naming.LABEL_INSTANCE: instance,
                naming.LABEL_NOTEBOOK: name,
                naming.LABEL_URL: f"http://x{number}.example.org/?a=$b&c=\\d",
            }
            dockerfile = render_dockerfile(
                env_image=stack.base_image,
                user="1000:100",
                shared=False,
                labels=labels,
            ).encode()
            context = (
                ContextFile("Dockerfile", len(dockerfile), data=dockerfile),
                ContextFile(f"notebook/{name}", 2, data=b"{}"),
            )
            image = f"{instance}/labels:{number}"
            with write_context_tar(context, no_blobs, 0) as tar:
                limits = BuildLimits(2**30, 1.0, 64, 120)
                await engine.build(image, tar, api_labels(labels), limits, lambda _: None)
            config = json.loads(docker("image", "inspect", image))[0]["Config"]
            assert {k: config["Labels"][k] for k in labels} == labels
            listing = docker("run", "--rm", "--network", "none", image, "ls", "-A", "/")
            assert "pwned" not in listing
            # The notebook is in the work folder under its exact name.
            check = "import os, sys; print(os.path.isfile(sys.argv[1]))"
            found = docker(
                "run", "--rm", "--network", "none", "-w", WORKDIR, image,
                "python3", "-c", check, name,
            )  # fmt: skip
            assert found == "True", found
