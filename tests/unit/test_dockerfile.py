import json

from hypothesis import given
from hypothesis import strategies as st

from gateway.dockerfile import START_SCRIPT, WORKDIR, render_dockerfile, render_env_dockerfile

HOSTILE = [
    'quote" ]\nRUN rm -rf / #.ipynb',
    "$(id).ipynb",
    "${HOME}/x.ipynb",
    "--help.ipynb",
    "back\\slash\\.ipynb",
    "Análise de dados.ipynb",
    "tab\tand\rreturn.ipynb",
]


def render(path: str, shared: bool = True) -> str:
    return render_dockerfile(
        env_image="registry.example.org/nbgw/climate--env:abc",
        user="1000:100",
        notebook_path=path,
        shared=shared,
    )


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def test_environment_structure() -> None:
    lines = instructions(
        render_env_dockerfile(
            base_image="quay.io/jupyter/base-notebook:latest", user="1000:100", requirements=True
        )
    )
    assert [line.split()[0] for line in lines] == [
        "FROM",
        "USER",
        "COPY",
        "RUN",
        "COPY",
        "WORKDIR",
        "EXPOSE",
        "CMD",
    ]
    assert lines[0] == "FROM quay.io/jupyter/base-notebook:latest" and lines[1] == "USER 1000:100"
    assert all("--chown=1000:100" in line for line in lines if line.startswith("COPY"))
    assert f"WORKDIR {WORKDIR}" in lines
    assert lines[-1] == f'CMD ["python3", "{START_SCRIPT}", "", "/lab"]'
    plain = instructions(render_env_dockerfile(base_image="b", user="1000:100", requirements=False))
    assert not any("requirements" in line or line.startswith("RUN") for line in plain)


def test_notebook_images_are_thin_layers_on_their_environment() -> None:
    lines = instructions(render("intro.ipynb"))
    assert lines[0] == "FROM registry.example.org/nbgw/climate--env:abc"
    assert [line.split()[0] for line in lines] == ["FROM", "COPY", "COPY", "CMD"]
    assert lines[-1] == f'CMD ["python3", "{START_SCRIPT}", "intro.ipynb", "/lab"]'
    assert [line.split()[0] for line in instructions(render("a.ipynb", shared=False))] == [
        "FROM",
        "COPY",
        "CMD",
    ]


def test_a_server_image_holds_the_repository_without_a_notebook_layer() -> None:
    lines = instructions(
        render_dockerfile(
            env_image="e", user="1000:100", notebook_path="", shared=True, notebook=False
        )
    )
    assert lines == ["FROM e", f'COPY --chown=1000:100 ["shared/", "{WORKDIR}/"]']


@given(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1)))
def test_file_names_never_change_the_structure(path: str) -> None:
    """Only the CMD's JSON string differs, and it decodes back to the exact name."""
    plain, hostile = instructions(render("plain.ipynb")), instructions(render(path))
    assert len(plain) == len(hostile)
    assert plain[:-1] == hostile[:-1]
    command = hostile[-1].removeprefix("CMD ")
    assert json.loads(command) == ["python3", START_SCRIPT, path, "/lab"]
    assert "\n" not in command and "\r" not in command
