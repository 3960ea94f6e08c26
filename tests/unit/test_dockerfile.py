import json

from hypothesis import given
from hypothesis import strategies as st

from gateway.publish.dockerfile import (
    COMMIT_DIR,
    REQUIREMENTS,
    WORKDIR,
    api_labels,
    install_command,
    label_instruction,
    render_dockerfile,
    render_env_dockerfile,
    start_command,
    start_script,
)

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
        shared=shared,
        labels={"notebook-gateway.notebook": path, "notebook-gateway.kind": "published"},
    )


def parse_label(instruction: str) -> dict[str, str]:
    """Read a LABEL instruction of double-quoted "key"="value" words the way the Dockerfile
    parser does: a backslash keeps the ", $ or backslash after it literal; an unescaped $
    would be substituted. test_image_labels has the real engine read them."""
    text, at, found = instruction.removeprefix("LABEL "), 0, {}

    def word(at: int) -> tuple[str, int]:
        assert text[at] == '"', text
        at, out = at + 1, []
        while text[at] != '"':
            if text[at] == "\\" and text[at + 1] in '"$\\':
                at += 1
            else:
                assert text[at] != "$", text
            out.append(text[at])
            at += 1
        return "".join(out), at + 1

    while at < len(text):
        key, at = word(at)
        assert text[at] == "=", text
        found[key], at = word(at + 1)
        if at < len(text):
            assert text[at] == " ", text
            at += 1
    return found


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line and not line.startswith("#")]


def test_environment_structure() -> None:
    lines = instructions(
        render_env_dockerfile(
            base_image="quay.io/jupyter/base-notebook:latest",
            user="1000:100",
            requirements=True,
            labels={"notebook-gateway.kind": "environment"},
        )
    )
    assert [line.split()[0] for line in lines] == [
        "FROM",
        "LABEL",
        "COPY",
        "USER",
        "COPY",
        "WORKDIR",
        "EXPOSE",
    ]
    assert lines[0] == "FROM quay.io/jupyter/base-notebook:latest" and lines[3] == "USER 1000:100"
    # The work area is the notebook user's, whatever the base image made of it: new files
    # anywhere in it (COPY --chown creates it theirs; WORKDIR would make it root's).
    assert lines[2] == f'COPY --chown=1000:100 [".gateway/workdir/", "{WORKDIR}/"]'
    assert lines.index(lines[2]) < lines.index(f"WORKDIR {WORKDIR}")
    assert all("--chown=1000:100" in line for line in lines if line.startswith("COPY"))
    assert f"WORKDIR {WORKDIR}" in lines
    # No repository code runs in the engine's builder: the install step runs afterwards, in
    # a container of its own; the Dockerfile names it, so it is part of the image's hash.
    assert not any(line.startswith(("RUN", "CMD")) for line in lines)
    text = render_env_dockerfile(base_image="b", user="1000:100", requirements=True, labels={})
    assert json.dumps(install_command()) in text and install_command()[-1] == REQUIREMENTS
    plain = instructions(
        render_env_dockerfile(base_image="b", user="1000:100", requirements=False, labels={})
    )
    assert not any("requirements" in line for line in plain)


def test_notebook_images_are_thin_layers_on_their_environment() -> None:
    lines = instructions(render("intro.ipynb"))
    assert lines[0] == "FROM registry.example.org/nbgw/climate--env:abc"
    # What stays the same between versions of the notebook comes before its files.
    assert [line.split()[0] for line in lines] == ["FROM", "LABEL", "COPY", "COPY"]
    assert lines[-1] == f'COPY --chown=1000:100 ["notebook/", "{WORKDIR}/"]'
    assert [line.split()[0] for line in instructions(render("a.ipynb", shared=False))] == [
        "FROM",
        "LABEL",
        "COPY",
    ]


def test_a_server_image_holds_the_repository_without_a_notebook_layer() -> None:
    lines = instructions(
        render_dockerfile(env_image="e", user="1000:100", shared=True, labels={}, notebook=False)
    )
    # Read-only where start-notebook.py fills the work area (a volume) from.
    assert lines == ["FROM e", f'COPY ["shared/", "{COMMIT_DIR}/"]']


def test_every_container_runs_the_current_start_script() -> None:
    command = start_command("sub/a b.ipynb", "/tree")
    assert command == ["python3", "-c", start_script().decode(), "sub/a b.ipynb", "/tree"]


@given(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1)))
def test_file_names_never_change_the_structure(path: str) -> None:
    """Only the quoted label differs, and it decodes back to the exact name; a name the LABEL
    cannot hold is left to the build API."""
    plain, hostile = instructions(render("plain.ipynb")), instructions(render(path))
    assert len(plain) == len(hostile)
    assert [line.split()[0] for line in plain] == [line.split()[0] for line in hostile]
    assert plain[2:] == hostile[2:]
    labels = {"notebook-gateway.notebook": path, "notebook-gateway.kind": "published"}
    held = {k: v for k, v in labels.items() if k not in api_labels(labels)}
    assert parse_label(hostile[1]) == held


@given(st.dictionaries(st.text(min_size=1), st.text()))
def test_labels_are_held_by_the_dockerfile_or_given_to_the_api(labels: dict[str, str]) -> None:
    instruction, rest = label_instruction(labels), api_labels(labels)
    assert len(instruction.splitlines()) <= 1
    held = {k: v for k, v in labels.items() if k not in rest}
    assert parse_label(instruction) == held if held else instruction == ""
    assert all(any(not ch.isprintable() for ch in k + v) for k, v in rest.items())
