"""The repository adapter against real git: file:// and smart HTTP with a token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import git
import pytest
from aiohttp.test_utils import TestServer

from gateway.adapters.git import NotebookRepo
from gateway.errors import GitError, PublishError
from tests.support.git_http import SEEN_PASSWORDS, git_http_app
from tests.support.gitrepo import GitRemote, notebook

pytestmark = pytest.mark.timeout(120)

BOT = git.Actor("notebook-gateway[bot]", "bot@example.org")
TOKEN = "glpat-Secr3tTokenValue-0123"


def files_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_reads_the_exact_commit_and_publishes_on_top(
    remote: GitRemote, tmp_path: Path
) -> None:
    first = remote.commit(
        {"climate/a.ipynb": notebook("1"), "climate/data/x.csv": b"x", "top.txt": b"t"}
    )
    repo = NotebookRepo(remote.url, tmp_path / "state" / "repo.git", branch="main")
    assert await repo.fetch() == first
    second = remote.commit({"climate/b.ipynb": notebook("2")})

    # Reading the first commit still shows the first commit's files.
    entries = await repo.project_entries(first, "climate")
    assert entries is not None
    assert sorted(e.path for e in entries) == ["a.ipynb", "data/x.csv"]
    assert await repo.project_entries(first, "missing") is None
    assert await repo.project_entries(first, "top.txt") is None
    assert await repo.projects(first) == ["climate"]

    assert await repo.fetch() == second
    assert await repo.last_change(second, "climate") == second
    sha = await repo.publish_file("URL.md", b"# v1\n", "Update URL.md [skip ci]", BOT)
    assert sha is not None and remote.read("URL.md") == "# v1"
    # The same content again: no commit.
    assert await repo.publish_file("URL.md", b"# v1\n", "again", BOT) is None
    assert remote.log()[0].startswith(sha)
    assert await repo.last_change(sha, "climate") == second


async def test_default_branch_comes_from_the_remote(remote: GitRemote, tmp_path: Path) -> None:
    head = remote.commit({"p/a.ipynb": notebook("1")})
    repo = NotebookRepo(remote.url, tmp_path / "repo.git")
    assert await repo.fetch() == head
    assert repo.branch == "main"


async def test_a_push_that_loses_a_race_is_rebuilt_on_the_new_tip(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit({"p/a.ipynb": notebook("1")})

    class RacingRepo(NotebookRepo):
        """Someone pushes right after each of the first two fetches of the publish."""

        races = 2

        def _fetch_into(self, repo: git.Repo) -> str:
            tip = super()._fetch_into(repo)
            if self.races:
                self.races -= 1
                remote.commit({f"other-{self.races}.txt": b"x"}, "Someone else")
            return tip

    repo = RacingRepo(remote.url, tmp_path / "repo.git", branch="main")
    sha = await repo.publish_file("URL.md", b"# urls\n", "Update URL.md [skip ci]", BOT)
    subjects = [line.split("\t")[3] for line in remote.log()]
    assert subjects[:3] == ["Update URL.md [skip ci]", "Someone else", "Someone else"]
    assert remote.log()[0].startswith(str(sha))
    assert remote.read("other-0.txt") == "x" and remote.read("URL.md") == "# urls"


async def test_a_branch_that_never_stops_moving_gives_up_clearly(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit({"p/a.ipynb": notebook("1")})

    class BusyRepo(NotebookRepo):
        def _fetch_into(self, repo: git.Repo) -> str:
            tip = super()._fetch_into(repo)
            remote.commit({"busy.txt": str(tip).encode()}, "Busy")
            return tip

    repo = BusyRepo(remote.url, tmp_path / "repo.git", branch="main")
    with pytest.raises(PublishError, match="rejected 5 times"):
        await repo.publish_file("URL.md", b"# urls\n", "Update URL.md", BOT)
    assert remote.read("URL.md") is None


async def test_fetches_asked_for_together_share_one_and_see_every_earlier_push(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit({"p/a.ipynb": notebook("1")})

    class CountingRepo(NotebookRepo):
        fetches = 0

        def _fetch_into(self, repo: git.Repo) -> str:
            CountingRepo.fetches += 1
            return super()._fetch_into(repo)

    repo = CountingRepo(remote.url, tmp_path / "repo.git", branch="main")
    await repo.fetch()
    CountingRepo.fetches = 0
    head = remote.commit({"p/a.ipynb": notebook("2")})
    assert await asyncio.gather(*(repo.fetch() for _ in range(6))) == [head] * 6
    assert CountingRepo.fetches == 1

    # A push that lands while a fetch runs is seen by whoever asks after it.
    first = asyncio.ensure_future(repo.fetch())
    await asyncio.sleep(0)
    later_head = remote.commit({"p/b.ipynb": notebook("3")})
    assert await repo.fetch() == later_head
    assert await first in (head, later_head)


async def test_publishing_the_same_file_again_is_free_until_the_remote_changes_it(
    remote: GitRemote, tmp_path: Path
) -> None:
    remote.commit({"p/a.ipynb": notebook("1")})
    repo = NotebookRepo(remote.url, tmp_path / "repo.git", branch="main")
    await repo.fetch()
    assert await repo.publish_file("URL.md", b"# urls\n", "Update URL.md", BOT) is not None
    commits = len(remote.log())
    assert await repo.publish_file("URL.md", b"# urls\n", "Update URL.md", BOT) is None

    # Someone edits URL.md by hand; the next notification fetches, and it is put right again.
    remote.commit({"URL.md": b"# hand-edited\n"}, "Edit by hand")
    await repo.fetch()
    sha = await repo.publish_file("URL.md", b"# urls\n", "Update URL.md", BOT)
    assert sha is not None and remote.read("URL.md") == "# urls"
    assert len(remote.log()) == commits + 2


async def test_https_token_is_used_but_never_stored(remote: GitRemote, tmp_path: Path) -> None:
    head = remote.commit({"p/a.ipynb": notebook("1")})
    app = git_http_app(remote.bare.parent, TOKEN)
    async with TestServer(app, host="127.0.0.1") as server:
        url = f"http://127.0.0.1:{server.port}/remote.git"
        state = tmp_path / "state"
        repo = NotebookRepo(url, state / "repo.git", branch="main", token=TOKEN)
        assert await repo.fetch() == head
        assert await repo.publish_file("URL.md", b"# urls\n", "Update URL.md", BOT) is not None
        assert remote.read("URL.md") == "# urls"
        assert TOKEN in app[SEEN_PASSWORDS]
        # Not in the clone's config, not anywhere under the state directory.
        config = (state / "repo.git" / "config").read_text()
        assert url in config and TOKEN not in config
        assert TOKEN.encode() not in files_under(state)

        # A wrong token fails at once with git's reason, and does not leak the token.
        wrong = NotebookRepo(
            url, tmp_path / "other" / "repo.git", branch="main", token="wrong-token-value"
        )
        with pytest.raises(GitError) as raised:
            await asyncio.wait_for(wrong.fetch(), 60)
        assert "Authentication failed" in raised.value.message
        assert "wrong-token-value" not in raised.value.message

        # No token at all: no prompt, no hang.
        anonymous = NotebookRepo(url, tmp_path / "anon" / "repo.git", branch="main")
        with pytest.raises(GitError):
            await asyncio.wait_for(anonymous.fetch(), 60)


async def test_reading_a_commit_the_clone_lacks_is_a_git_error(
    remote: GitRemote, tmp_path: Path
) -> None:
    """Every read of the clone answers a git failure as the API's GitError (502), never as an
    unhandled exception (a 500)."""
    tip = remote.commit({"climate/a.ipynb": notebook("1")})
    repo = NotebookRepo(remote.url, tmp_path / "state" / "repo.git", branch="main")
    await repo.fetch()
    missing = "0123456789abcdef" * 2 + "01234567"
    reads = [
        repo.changed_folders(missing, tip),
        repo.project_entries(missing, "climate"),
        repo.projects(missing),
        repo.repository_entries(missing),
    ]
    for read in reads:
        with pytest.raises(GitError) as raised:
            await read
        assert raised.value.status == 502 and "git" in raised.value.message.lower()
