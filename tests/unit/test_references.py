"""Image references and branch names: one rule each, for settings and requests alike. Branch
names are held to git's own check."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadRequest, ConfigError
from gateway.references import is_branch_name, is_image_reference
from gateway.schemas import ServerRequest, parse
from gateway.settings import Settings

BASE = {"AUTH_TOKEN": "t" * 20, "GITLAB_REPO_URL": "https://gitlab.example.org/t/nb.git"}


def git_takes(name: str) -> bool:
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
    )
    return done.returncode == 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab_-./", min_size=1, max_size=12))
def test_every_branch_name_taken_is_one_git_takes(name: str) -> None:
    if is_branch_name(name):
        assert git_takes(name), name


@pytest.mark.parametrize(
    ("name", "taken"),
    [
        ("main", True),
        ("feature/x-1", True),
        ("release-1.2", True),
        ("-x", False),
        ("a..b", False),
        ("a//b", False),
        ("a/.b", False),
        (".a", False),
        ("a.lock", False),
        ("a/", False),
        ("a.", False),
        ("a b", False),
    ],
)
def test_settings_and_requests_take_the_same_branch_names(name: str, taken: bool) -> None:
    assert is_branch_name(name) is taken
    request = {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "branch": name}
    if taken:
        assert Settings.from_env({**BASE, "GIT_BRANCH": name}).git_branch == name
        assert parse(ServerRequest, request).branch == name
    else:
        with pytest.raises(ConfigError):
            Settings.from_env({**BASE, "GIT_BRANCH": name})
        with pytest.raises(BadRequest):
            parse(ServerRequest, request)


@pytest.mark.parametrize(
    ("image", "taken"),
    [
        ("quay.io/jupyter/base-notebook:latest", True),
        ("registry.example.org:5000/nb/x@sha256:" + "a" * 64, True),
        ("evil image", False),
        ("-x", False),
    ],
)
def test_settings_and_requests_take_the_same_image_references(image: str, taken: bool) -> None:
    assert is_image_reference(image) is taken
    request = {"namespace": "g", "project": "p", "commit_sha": "a" * 40, "image": image}
    if taken:
        assert Settings.from_env({**BASE, "BASE_IMAGE": image}).base_image == image
        assert parse(ServerRequest, request).image == image
    else:
        with pytest.raises(ConfigError):
            Settings.from_env({**BASE, "BASE_IMAGE": image})
        with pytest.raises(BadRequest):
            parse(ServerRequest, request)
