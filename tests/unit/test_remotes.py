"""Git remotes: the one parse behind GITLAB_URL's default, the repository's identity, webhook
matching and URL.md's commit links."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.remotes import clone_key, commit_web_url, origin, repository_path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://gitlab.example.org/team/notebooks.git", "team/notebooks"),
        ("https://gitlab.example.org/group/sub/notebooks", "group/sub/notebooks"),
        ("ssh://git@gitlab.example.org:2222/team/notebooks.git", "team/notebooks"),
        ("git@gitlab.example.org:team/notebooks.git", "team/notebooks"),
        ("file:///srv/notebooks.git", None),
        ("/srv/notebooks.git", None),
    ],
)
def test_repository_path(url: str, path: str | None) -> None:
    assert repository_path(url) == path


def test_repository_path_under_a_gitlab_at_a_sub_path() -> None:
    url = "https://h.example/gitlab/team/notebooks.git"
    assert repository_path(url, "https://h.example/gitlab") == "team/notebooks"
    assert clone_key("git@H.example:team/Notebooks.git") == clone_key(
        "http://h.example:8080/team/notebooks"
    )


def test_commit_web_url() -> None:
    assert (
        commit_web_url("https://gitlab.example.org/g/r.git")
        == "https://gitlab.example.org/g/r/-/commit/"
    )
    assert (
        commit_web_url("https://oauth2@gitlab.example.org:8443/g/sub/r")
        == "https://gitlab.example.org:8443/g/sub/r/-/commit/"
    )
    assert (
        commit_web_url("git@gitlab.example.org:g/r.git")
        == "https://gitlab.example.org/g/r/-/commit/"
    )
    assert commit_web_url("file:///srv/r.git") is None
    assert commit_web_url("/srv/r.git") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://gitlab.example.org/team/notebooks.git", "https://gitlab.example.org"),
        ("http://127.0.0.1:8929/team/notebooks.git", "http://127.0.0.1:8929"),
        ("ssh://git@gitlab.example.org:2222/team/notebooks.git", "https://gitlab.example.org"),
        ("git@gitlab.example.org:team/notebooks.git", "https://gitlab.example.org"),
        ("git://gitlab.example.org/team/notebooks.git", ""),
        ("file:///srv/notebooks.git", ""),
        ("/srv/notebooks.git", ""),
    ],
)
def test_the_gitlab_a_remote_belongs_to(url: str, expected: str) -> None:
    assert origin(url) == expected


LABEL = st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True)


@given(host=LABEL, group=LABEL, project=LABEL)
def test_gitlabs_clone_urls_of_one_project_agree(host: str, group: str, project: str) -> None:
    """The http and ssh URLs GitLab gives for one project (http_url_to_repo, ssh_url_to_repo)
    name the same repository, path and commit pages."""
    http = f"https://{host}.example/{group}/{project}.git"
    ssh = f"git@{host}.example:{group}/{project}.git"
    assert clone_key(http) == clone_key(ssh)
    assert repository_path(http) == repository_path(ssh) == f"{group}/{project}"
    assert commit_web_url(http) == commit_web_url(ssh)
