import pytest

from gateway.errors import InvalidRepository
from gateway.publish.discovery import ContextLimits, TreeEntry, snapshot

LIMITS = ContextLimits(max_file_size=1000, max_context_size=5000, max_context_files=10)


def entry(path: str, size: int = 10, link: str | None = None) -> TreeEntry:
    return TreeEntry(path=path, blob=f"blob-of-{path}", size=size, link_target=link)


def test_notebooks_at_any_depth_shared_files_and_requirements() -> None:
    found = snapshot(
        "climate",
        "c0ffee",
        [
            entry("intro.ipynb"),
            entry("deep/er/fit.ipynb"),
            entry("requirements.txt"),
            entry("data/x.csv"),
            entry(".ipynb_checkpoints/intro-checkpoint.ipynb"),
            entry(".hidden/secret.ipynb"),
            entry("sub/.env"),
        ],
        LIMITS,
    )
    assert [n.path for n in found.notebooks] == ["deep/er/fit.ipynb", "intro.ipynb"]
    assert [f.path for f in found.shared] == ["data/x.csv", "requirements.txt"]
    assert found.requirements is not None and found.requirements.path == "requirements.txt"
    assert found.commit == "c0ffee"


def test_symlinks_inside_the_project_are_followed() -> None:
    found = snapshot(
        "p",
        "c",
        [entry("data/real.csv", 7), entry("link.csv", 8, link="data/real.csv"), entry("a.ipynb")],
        LIMITS,
    )
    link = next(f for f in found.shared if f.path == "link.csv")
    assert link.blob == "blob-of-data/real.csv" and link.size == 7


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("evil", "/etc/passwd"),
        ("evil", "../other-project/secret"),
        ("data/evil", "../../x"),
        ("data/evil", "sub/../../../x"),
    ],
)
def test_symlinks_out_of_the_project_are_refused(link: str, target: str) -> None:
    with pytest.raises(InvalidRepository) as raised:
        snapshot("p", "c", [entry("a.ipynb"), entry(link, link=target)], LIMITS)
    assert link in raised.value.message and "outside the project" in raised.value.message


def test_every_problem_is_listed() -> None:
    with pytest.raises(InvalidRepository) as raised:
        snapshot(
            "p",
            "c",
            [
                entry("a.ipynb"),
                entry("big.bin", 5000),
                entry("dangling", link="nothing-here"),
                entry("loop1", link="loop2"),
                entry("loop2", link="loop1"),
            ],
            LIMITS,
        )
    problems = raised.value.detail["problems"]
    assert len(problems) == 4
    assert any("big.bin" in p and "limit" in p for p in problems)
    assert any("dangling" in p for p in problems)
    assert any("too many levels" in p for p in problems)


def test_file_names_that_are_not_utf8_are_refused() -> None:
    broken = b"caf\xe9.ipynb".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidRepository, match="not valid UTF-8"):
        snapshot("p", "c", [entry("a.ipynb"), entry(broken)], LIMITS)


def test_context_size_and_file_count_are_bounded() -> None:
    many = [entry(f"f{i}.csv") for i in range(12)]
    with pytest.raises(InvalidRepository, match=r"13 files"):
        snapshot("p", "c", [entry("a.ipynb"), *many], LIMITS)
    heavy = [entry(f"f{i}.csv", 900) for i in range(6)]
    with pytest.raises(InvalidRepository, match="byte limit"):
        snapshot("p", "c", [entry("a.ipynb"), *heavy], LIMITS)
