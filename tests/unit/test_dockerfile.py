import json

from hypothesis import given
from hypothesis import strategies as st

from gateway.dockerfile import START_SCRIPT, WORKDIR, render_dockerfile

HOSTILE = [
    'quote" ]\nRUN rm -rf / #.ipynb',
    "$(id).ipynb",
    "${HOME}/x.ipynb",
    "--help.ipynb",
    "back\\slash\\.ipynb",
    "Análise de dados.ipynb",
    "tab\tand\rreturn.ipynb",
]


def render(path: str, requirements: bool = True, shared: bool = True) -> str:
    return render_dockerfile(
        base_image="quay.io/jupyter/base-notebook:latest",
        user="1000:100",
        notebook_path=path,
        requirements=requirements,
        shared=shared,
    )


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def test_structure() -> None:
    lines = instructions(render("intro.ipynb"))
    assert lines[0] == "FROM quay.io/jupyter/base-notebook:latest"
    assert lines[1] == "USER 1000:100"
    assert [line.split()[0] for line in lines] == [
        "FROM", "USER", "COPY", "RUN", "COPY", "COPY", "COPY", "WORKDIR", "EXPOSE", "CMD",
    ]  # fmt: skip
    assert all("--chown=1000:100" in line for line in lines if line.startswith("COPY"))
    assert lines[-1] == f'CMD ["python3", "{START_SCRIPT}", "intro.ipynb", "/lab"]'
    assert f"WORKDIR {WORKDIR}" in lines


def test_requirements_and_shared_files_are_optional() -> None:
    lines = instructions(render("a.ipynb", requirements=False, shared=False))
    assert not any("requirements" in line for line in lines)
    assert not any('"shared/"' in line for line in lines)
    assert not any(line.startswith("RUN") for line in lines)


@given(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1)))
def test_file_names_never_change_the_structure(path: str) -> None:
    """Only the CMD's last JSON string differs, and it decodes back to the exact name."""
    plain, hostile = instructions(render("plain.ipynb")), instructions(render(path))
    assert len(plain) == len(hostile)
    assert plain[:-1] == hostile[:-1]
    command = hostile[-1].removeprefix("CMD ")
    assert json.loads(command) == ["python3", START_SCRIPT, path, "/lab"]
    assert "\n" not in command and "\r" not in command


def test_a_server_image_holds_the_repository_without_a_notebook_layer() -> None:
    lines = instructions(
        render_dockerfile(
            base_image="b", user="1000:100", notebook_path="", requirements=True,
            shared=True, notebook=False,
        )
    )  # fmt: skip
    assert any('"shared/"' in line for line in lines)
    assert not any('"notebook/"' in line for line in lines)
    assert lines[-1] == f'CMD ["python3", "{START_SCRIPT}", "", "/lab"]'
