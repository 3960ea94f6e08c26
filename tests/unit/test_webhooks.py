import pytest

from gateway.errors import BadRequest
from gateway.webhooks import Ignored, Push, classify, repository_path
from tests.support.gitlab_events import ZERO, commit, headers, push_event

A, B = "a" * 40, "b" * 40
BOT = "notebook-gateway@notebooks.example.org"


def run(
    body: object,
    branch: str = "",
    repository: str | None = "team/notebooks",
    kind: str = "Push Hook",
) -> Push | Ignored:
    return classify(
        headers("s", kind=kind, key="key-1"),
        body,
        branch=branch,
        repository=repository,
        bot_email=BOT,
    )


def test_a_push_to_the_branch_is_accepted_with_its_range() -> None:
    event = run(push_event(A, B))
    assert event == Push("main", A, B, "team/notebooks", "key-1")
    assert event.dedupe_key == f"push:main:{B}"


def test_a_new_branch_is_a_push_from_zero() -> None:
    event = run(push_event(ZERO, B))
    assert isinstance(event, Push) and event.before == ZERO


@pytest.mark.parametrize(
    ("body", "branch", "reason"),
    [
        (
            push_event(A, B, branch="feature"),
            "",
            "push to branch 'feature'; notebooks are published from 'main'",
        ),
        (push_event(A, B, branch="main"), "release", "published from 'release'"),
        (push_event(A, ZERO), "", "the branch was deleted"),
        (push_event(A, B, branch="v1.0", kind="tag_push"), "", "tag pushes"),
        (push_event(A, B, path="someone/else"), "", "not to the notebooks repository"),
        (
            push_event(A, B, commits=[commit(B, "Update URL.md [skip ci]", BOT)]),
            "",
            "own URL.md commits",
        ),
        ({"object_kind": "merge_request"}, "", "only push events"),
    ],
)
def test_what_is_not_for_us_is_ignored_with_a_reason(
    body: dict[str, object], branch: str, reason: str
) -> None:
    event = run(body, branch)
    assert isinstance(event, Ignored) and reason in event.reason


def test_mixed_pushes_are_not_mistaken_for_the_gateways_own() -> None:
    body = push_event(A, B, commits=[commit(A, "mine", BOT), commit(B, "theirs")])
    assert isinstance(run(body), Push)
    # 25 commits: GitLab lists 20, so the bot's commits among them prove nothing.
    many = [commit(f"{i:040x}", "x", BOT) for i in range(25)]
    assert isinstance(run(push_event(A, B, commits=many)), Push)


def test_local_remotes_accept_any_repository_path() -> None:
    assert isinstance(run(push_event(A, B, path="anything/at-all"), repository=None), Push)


@pytest.mark.parametrize(
    "body", [[], {"object_kind": "push"}, push_event("nope", B), push_event(A, "")]
)
def test_payloads_that_are_not_gitlabs_are_bad_requests(body: object) -> None:
    with pytest.raises(BadRequest):
        run(body)


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
