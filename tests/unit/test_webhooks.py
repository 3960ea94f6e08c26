import pytest

from gateway import remotes
from gateway.errors import BadRequest
from gateway.webhooks import (
    Ignored,
    Push,
    Repository,
    classify,
)
from tests.support.gitlab_events import ZERO, commit, headers, push_event

A, B = "a" * 40, "b" * 40
BOT = "notebook-gateway@notebooks.example.org"
OURS = Repository(
    urls=frozenset({remotes.clone_key("https://gitlab.example.org/team/notebooks.git")}),
    paths=frozenset({"team/notebooks"}),
)


def run(
    body: object,
    branch: str = "",
    repository: Repository = OURS,
    kind: str = "Push Hook",
    event: str | None = None,
) -> Push | Ignored:
    sent = headers("s", kind=kind, key="key-1")
    if event is None:
        del sent["X-Gitlab-Event-UUID"]
    else:
        sent["X-Gitlab-Event-UUID"] = event
    return classify(sent, body, branch=branch, repository=repository, bot_email=BOT)


def test_a_push_to_the_branch_is_accepted_with_its_range() -> None:
    event = run(push_event(A, B))
    assert event == Push("main", A, B, "team/notebooks", "key-1", None)
    assert event.dedupe_key == f"push:main:{A}:{B}" and event.dedupe_within is not None


def test_one_event_is_one_push_whichever_hook_delivers_it_and_a_rollback_is_another() -> None:
    first = run(push_event(A, B), event="event-1")
    assert isinstance(first, Push) and first.dedupe_key == "push-event:event-1"
    assert first.dedupe_within is None
    rollback = run(push_event(B, A))
    assert isinstance(rollback, Push) and rollback.dedupe_key != first.dedupe_key
    again = run(push_event(A, B), event="event-2")  # the same change, pushed again later
    assert isinstance(again, Push) and again.dedupe_key != first.dedupe_key


def test_the_repository_is_known_by_id_urls_or_path() -> None:
    by_id = Repository(project_id=15)
    assert isinstance(run(push_event(A, B, path="renamed/elsewhere"), repository=by_id), Push)
    other = push_event(A, B)
    other["project_id"] = 16
    assert isinstance(run(other, repository=by_id), Ignored)
    # GitLab under a sub-path, reached over ssh: the same project.
    sub = Repository(urls=frozenset({remotes.clone_key("https://h.example/gitlab/t/nb.git")}))
    body = push_event(A, B, path="t/nb")
    body["project"]["git_ssh_url"] = "git@h.example:gitlab/t/nb.git"
    body["project"]["git_http_url"] = "https://h.example/gitlab/t/nb.git"
    assert isinstance(run(body, repository=sub), Push)


def test_a_system_hooks_repository_update_is_the_push_of_its_branch() -> None:
    update = {
        "event_name": "repository_update",
        "project_id": 15,
        "project": push_event(A, B)["project"],
        "changes": [
            {"before": A, "after": B, "ref": "refs/heads/feature"},
            {"before": B, "after": A, "ref": "refs/heads/main"},
        ],
        "refs": ["refs/heads/feature", "refs/heads/main"],
    }
    event = run(update, kind="System Hook")
    assert isinstance(event, Push) and (event.before, event.after) == (B, A)
    update["changes"] = update["changes"][:1]
    assert isinstance(run(update, kind="System Hook"), Ignored)


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


def test_local_remotes_leave_the_question_to_the_clone() -> None:
    """Nothing tells a local remote's GitLab project: the push job checks that the clone
    has the pushed commit."""
    event = run(push_event(A, B, path="anything/at-all"), repository=Repository())
    assert isinstance(event, Push) and event.verify and event.params()["verify"] is True


@pytest.mark.parametrize(
    "body", [[], {"object_kind": "push"}, push_event("nope", B), push_event(A, "")]
)
def test_payloads_that_are_not_gitlabs_are_bad_requests(body: object) -> None:
    with pytest.raises(BadRequest):
        run(body)
