import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.models import NotebookAction, NotebookOutcome, NotebookState
from gateway.publish.urlmd import escape_markdown, render_url_md

SHA = "0123456789abcdef0123456789abcdef01234567"
HEADER = "| Notebook | Link | State | Commit |"
SEPARATOR = "| --- | --- | --- | --- |"


def outcome(
    project: str,
    path: str,
    state: NotebookState = NotebookState.RUNNING,
    url: str = "",
    message: str = "",
) -> NotebookOutcome:
    return NotebookOutcome(
        project, path, state, NotebookAction.BUILT, url=url, commit=SHA, message=message
    )


def test_rows_per_project_sorted_with_links() -> None:
    text = render_url_md(
        [
            outcome("b", "z.ipynb", url="http://z--b.example.org/"),
            outcome("a", "y.ipynb", NotebookState.FAILED, message="build failed"),
            outcome("a", "x.ipynb", url="http://x--a.example.org/"),
            outcome("a", "gone.ipynb", NotebookState.REMOVED),
        ],
        "https://gitlab.example.org/team/notebooks.git",
    )
    assert text.index("## a") < text.index("## b")
    assert text.index("| x.ipynb |") < text.index("| y.ipynb |")
    assert "| x.ipynb | <http://x--a.example.org/> | running |" in text
    assert "| y.ipynb | - | failed: build failed |" in text
    assert "gone.ipynb" not in text
    link = f"[`01234567`](https://gitlab.example.org/team/notebooks/-/commit/{SHA})"
    assert text.count(link) == 3


def test_empty() -> None:
    assert "No notebooks are published yet." in render_url_md([], "/srv/repo.git")


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=40),
            st.text(min_size=1, max_size=60),
            st.text(max_size=300),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda t: (t[0], t[1]),
    )
)
def test_any_name_or_message_stays_inside_its_table_cell(
    entries: list[tuple[str, str, str]],
) -> None:
    records = [
        outcome(project, path, NotebookState.FAILED, message=message)
        for project, path, message in entries
    ]
    text = render_url_md(records, "/srv/repo.git")
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| ") and line not in (HEADER, SEPARATOR)
    ]
    assert len(rows) == len(entries)
    assert all(unescaped_pipes(row) == 5 for row in rows)
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert len(headings) == 1 + len({project for project, _, _ in entries})


def test_escape_markdown() -> None:
    assert escape_markdown("a|b [x](y) *z*\nnext") == "a\\|b \\[x\\]\\(y\\) \\*z\\* next"
