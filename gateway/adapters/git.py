"""The notebooks repository: a bare clone under STATE_DIR, read straight from git objects.

GitPython blocks, so every call runs in a worker thread. Reading is done from the exact commit
that was fetched, never from a working tree, so concurrent jobs cannot see each other's state.
Credentials reach git only through GIT_ASKPASS and the environment of each git process: they are
never written to the clone's config or to disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import git
from git.index import IndexFile
from git.index.typ import BaseIndexEntry
from gitdb import IStream

from gateway.errors import GitError, PublishError
from gateway.publish.context_tar import BlobReader
from gateway.publish.discovery import TreeEntry

PUBLISH_ATTEMPTS = 5
MEMO_SIZE = 512  # answers about commits, which never change
T = TypeVar("T")
_ASKPASS = """#!/bin/sh
# Answers git's credential prompts from the environment of the git process; holds no secret.
case "$1" in
  Username*) printf '%s\\n' "$NOTEBOOK_GATEWAY_GIT_USERNAME" ;;
  *) printf '%s\\n' "$NOTEBOOK_GATEWAY_GIT_PASSWORD" ;;
esac
"""
_REJECTED = re.compile(
    r"\[rejected\]|non-fast-forward|fetch first|\[remote rejected\].*(stale|lock)"
)
# GitLab's refusal of a push to a protected branch (lib/gitlab/checks/branch_check.rb).
_PROTECTED = re.compile(r"protected branch|pre-receive hook declined", re.IGNORECASE)


class NotebookRepo:
    def __init__(
        self,
        url: str,
        clone_dir: Path,
        *,
        branch: str = "",
        token: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.url = url
        self.clone_dir = clone_dir
        self.timeout = timeout
        self._branch = branch
        self._token = token
        self._lock = asyncio.Lock()  # fetch and publish move refs: one at a time
        self._next_fetch: asyncio.Future[str] | None = None
        self._memo: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        # (branch tip, path, content) of the last file publish_file found or made up to date.
        self._published: tuple[str, str, bytes] | None = None

    # -- public, async ------------------------------------------------------------------------

    async def fetch(self) -> str:
        """Fetch the branch and return the commit it points to. Callers that ask while a fetch
        waits to start share it: it starts after each of them asked, so it sees at least what
        they were notified of."""
        if self._next_fetch is None:
            self._next_fetch = asyncio.ensure_future(self._fetch_next())
        return await asyncio.shield(self._next_fetch)

    async def _fetch_next(self) -> str:
        async with self._lock:
            self._next_fetch = None  # whoever asks from now on gets a later fetch
            return await asyncio.to_thread(self._fetch)

    async def project_entries(self, commit: str, project: str) -> list[TreeEntry] | None:
        """Every file under the top-level folder `project`, or None if there is no such folder."""
        entries = await self._remembered(
            ("entries", commit, project), lambda: self._project_entries(commit, project)
        )
        return list(entries) if entries is not None else None

    async def repository_entries(self, commit: str) -> list[TreeEntry]:
        """Every file of the repository at `commit` (a user server holds all of it)."""
        return await asyncio.to_thread(self._project_entries, commit, None) or []

    async def last_change(self, commit: str, folder: str) -> str:
        """The newest commit, up to `commit`, that changed anything under `folder`."""

        def read() -> str:
            with self._repo() as repo:
                return self._git(repo, "rev-list", "-1", commit, "--", folder) or commit

        return await self._remembered(("last_change", commit, folder), read)

    async def has_commit(self, sha: str) -> bool:
        def check() -> bool:
            with self._repo() as repo:
                try:
                    repo.git.execute(["git", "cat-file", "-e", f"{sha}^{{commit}}"])
                except git.GitCommandError:
                    return False
                return True

        return bool(re.fullmatch(r"[0-9a-f]{40}", sha)) and await asyncio.to_thread(check)

    async def changed_folders(self, before: str, after: str) -> list[str]:
        """Top-level folders with any file added, changed or removed between two commits."""

        def diff() -> list[str]:
            with self._repo() as repo:
                out = self._git_bytes(
                    repo, "diff", "--name-only", "--no-renames", "-z", before, after
                )
            names = set()
            for raw in out.split(b"\0"):
                folder, slash, _ = raw.partition(b"/")
                if slash:
                    names.add(folder.decode("utf-8", "surrogateescape"))
            return sorted(names)

        return await asyncio.to_thread(diff)

    async def check_remote(self, timeout: float) -> str:
        """Whether the remote answers and lets the gateway read the branch (GitError if not)."""

        def ask() -> str:
            # Outside the clone, which a fetch may be creating or moving meanwhile.
            self.clone_dir.parent.mkdir(parents=True, exist_ok=True)
            ref = f"refs/heads/{self._branch}" if self._branch else "HEAD"
            command = git.Git(str(self.clone_dir.parent))
            out = self._git(command, "ls-remote", self.url, ref, timeout=timeout)
            if not out.strip():
                raise GitError(f"the remote has no {ref}")
            return f"{_safe_url(self.url)} has {ref} at {out.split()[0][:12]}"

        return await asyncio.to_thread(ask)

    async def last_fetched(self) -> str | None:
        """The commit of the last successful fetch, if there was one (works offline)."""

        def read() -> str | None:
            if not self._branch or not (self.clone_dir / "HEAD").exists():
                return None
            with self._repo() as repo:
                try:
                    ref = f"refs/remotes/origin/{self._branch}^{{commit}}"
                    return str(repo.git.execute(["git", "rev-parse", "--verify", "-q", ref]))
                except git.GitCommandError:
                    return None

        return await asyncio.to_thread(read)

    async def projects(self, commit: str) -> list[str]:
        return list(await self._remembered(("projects", commit), lambda: self._projects(commit)))

    async def publish_file(
        self, path: str, content: bytes, message: str, author: git.Actor
    ) -> str | None:
        """Commit `content` at `path` on top of the branch and push it. Returns the new commit,
        or None when the file already had that content. A push rejected because someone pushed
        meanwhile is retried on top of their commit."""
        async with self._lock:
            # Already so at the tip the last fetch saw: no need to ask the remote again.
            tip = await asyncio.to_thread(self._tracking_tip)
            if tip and (
                self._published == (tip, path, content)
                or await asyncio.to_thread(self._content_at, tip, path) == content
            ):
                self._published = (tip, path, content)
                return None
            commit = await asyncio.to_thread(self._publish, path, content, message, author)
            self._published = (await asyncio.to_thread(self._tracking_tip), path, content)
            return commit

    @contextmanager
    def blob_reader(self) -> Iterator[BlobReader]:
        """Open the clone for streaming blob contents (from a worker thread)."""
        with self._repo() as repo:
            yield lambda sha: repo.odb.stream(bytes.fromhex(sha))

    async def commit_time(self, commit: str) -> int:
        def read() -> int:
            with self._repo() as repo:
                return int(repo.commit(commit).committed_date)

        return await self._remembered(("commit_time", commit), read)

    async def _remembered(self, key: tuple[str, ...], compute: Callable[[], T]) -> T:
        """compute() in a worker thread, once per key: what a commit holds never changes."""
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]  # type: ignore[no-any-return]
        value = await asyncio.to_thread(compute)
        self._memo[key] = value
        if len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return value

    @property
    def branch(self) -> str:
        return self._branch

    # -- blocking implementation ------------------------------------------------------------

    @contextmanager
    def _repo(self) -> Iterator[git.Repo]:
        repo = git.Repo(self.clone_dir)
        try:
            yield repo
        finally:
            repo.close()

    def _env(self) -> dict[str, str]:
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_LITERAL_PATHSPECS": "1",
            "GIT_ASKPASS": str(self._askpass()),
            "SSH_ASKPASS": str(self._askpass()),
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
            # No credential helper may store what askpass answers.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "credential.helper",
            "GIT_CONFIG_VALUE_0": "",
        }
        if self._token:
            env["NOTEBOOK_GATEWAY_GIT_USERNAME"] = urlsplit(self.url).username or "oauth2"
            env["NOTEBOOK_GATEWAY_GIT_PASSWORD"] = self._token
        return env

    def _askpass(self) -> Path:
        path = self.clone_dir.parent / "git-askpass.sh"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_ASKPASS)
            path.chmod(stat.S_IRWXU)
        return path

    def _git(self, repo: git.Repo | git.Git, *args: str, timeout: float | None = None) -> str:
        command = repo.git if isinstance(repo, git.Repo) else repo
        try:
            return str(
                command.execute(
                    ["git", *args], env=self._env(), kill_after_timeout=timeout or self.timeout
                )
            )
        except git.GitCommandError as exc:
            raise GitError(_describe(exc, self.url), detail={"command": args[0]}) from None

    def _git_bytes(self, repo: git.Repo, *args: str) -> bytes:
        """A local git command's raw output (file names are bytes), its failure a GitError."""
        try:
            out = repo.git.execute(["git", *args], env=self._env(), stdout_as_string=False)
        except git.GitCommandError as exc:
            raise GitError(_describe(exc, self.url), detail={"command": args[0]}) from None
        return bytes(out)

    def _ensure_clone(self) -> git.Repo:
        if not (self.clone_dir / "HEAD").exists():
            self.clone_dir.mkdir(parents=True, exist_ok=True)
            repo = git.Repo.init(self.clone_dir, bare=True)
            repo.git.remote("add", "origin", self.url)
            return repo
        repo = git.Repo(self.clone_dir)
        if repo.remote("origin").url != self.url:
            repo.git.remote("set-url", "origin", self.url)
        return repo

    def _fetch(self) -> str:
        repo = self._ensure_clone()
        try:
            return self._fetch_into(repo)
        finally:
            repo.close()

    def _fetch_into(self, repo: git.Repo) -> str:
        if not self._branch:
            self._branch = self._default_branch(repo)
        ref = f"refs/remotes/origin/{self._branch}"
        self._git(
            repo, "fetch", "--no-tags", "--force", "origin", f"+refs/heads/{self._branch}:{ref}"
        )
        return str(git.SymbolicReference.dereference_recursive(repo, ref))

    def _default_branch(self, repo: git.Repo) -> str:
        out = self._git(repo, "ls-remote", "--symref", "origin", "HEAD")
        match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD", out, re.MULTILINE)
        if not match:
            raise GitError(
                f"cannot tell the default branch of {self.url}; set GIT_BRANCH",
            )
        return match.group(1)

    def _project_entries(self, commit: str, project: str | None) -> list[TreeEntry] | None:
        with self._repo() as repo:
            pathspec = ["--", project] if project is not None else []
            out = self._git_bytes(
                repo, "ls-tree", "-r", "-l", "-z", "--full-tree", commit, *pathspec
            )
            prefix = b"" if project is None else project.encode("utf-8", "surrogateescape") + b"/"
            entries: list[TreeEntry] = []
            for record in out.split(b"\0"):
                if not record:
                    continue
                meta, _, raw_path = record.partition(b"\t")
                mode, kind, sha, size = meta.split()
                if kind != b"blob" or not raw_path.startswith(prefix):
                    continue  # submodules have no content here
                path = raw_path[len(prefix) :].decode("utf-8", "surrogateescape")
                link = None
                if mode == b"120000":
                    link = (
                        repo.odb.stream(bytes.fromhex(sha.decode()))
                        .read()
                        .decode("utf-8", "surrogateescape")
                    )
                entries.append(
                    TreeEntry(
                        path=path,
                        blob=sha.decode(),
                        size=int(size),
                        executable=mode == b"100755",
                        link_target=link,
                    )
                )
            return entries or None

    def _projects(self, commit: str) -> list[str]:
        with self._repo() as repo:
            out = self._git_bytes(repo, "ls-tree", "-z", commit)
            names = []
            for record in out.split(b"\0"):
                meta, _, name = record.partition(b"\t")
                if meta.split()[1:2] == [b"tree"] and not name.startswith(b"."):
                    names.append(name.decode("utf-8", "surrogateescape"))
            return names

    def _tracking_tip(self) -> str:
        """The commit the last fetch saw on the branch ("" before any), read from the ref
        files without starting git."""
        if not self._branch or not (self.clone_dir / "HEAD").exists():
            return ""
        with self._repo() as repo:
            try:
                ref = f"refs/remotes/origin/{self._branch}"
                return str(git.SymbolicReference.dereference_recursive(repo, ref))
            except ValueError:
                return ""

    def _content_at(self, commit: str, path: str) -> bytes | None:
        with self._repo() as repo:
            try:
                return bytes((repo.commit(commit).tree / path).data_stream.read())
            except KeyError:
                return None

    def _publish(self, path: str, content: bytes, message: str, author: git.Actor) -> str | None:
        repo = self._ensure_clone()
        try:
            for _ in range(PUBLISH_ATTEMPTS):
                tip = self._fetch_into(repo)
                parent = repo.commit(tip)
                try:
                    current = (parent.tree / path).data_stream.read()
                except KeyError:
                    current = None
                if current == content:
                    return None
                blob = repo.odb.store(IStream("blob", len(content), io.BytesIO(content)))
                index = IndexFile.from_tree(repo, parent)
                index.add([BaseIndexEntry((0o100644, blob.binsha, 0, path))], write=False)
                commit = git.Commit.create_from_tree(
                    repo,
                    index.write_tree(),
                    message,
                    parent_commits=[parent],
                    head=False,
                    author=author,
                    committer=author,
                )
                try:
                    repo.git.execute(
                        [
                            "git",
                            "push",
                            "--porcelain",
                            "origin",
                            f"{commit.hexsha}:refs/heads/{self._branch}",
                        ],
                        env=self._env(),
                        kill_after_timeout=self.timeout,
                    )
                except git.GitCommandError as exc:
                    said = f"{exc.stdout}\n{exc.stderr}"
                    if _PROTECTED.search(said):
                        raise PublishError(
                            f"GitLab refused the push of {path} to the protected branch"
                            f" {self._branch!r}: {_describe(exc, self.url)}. The token of"
                            " GITLAB_ACCESS_TOKEN needs the Maintainer role on the project, or"
                            f" Developers must be allowed to push to {self._branch!r} (Settings"
                            " > Repository > Protected branches)"
                        ) from None
                    if _REJECTED.search(said):
                        continue  # someone pushed meanwhile: rebuild on their commit
                    raise PublishError(
                        f"pushing {path} failed: {_describe(exc, self.url)}"
                    ) from None
                repo.git.update_ref(f"refs/remotes/origin/{self._branch}", commit.hexsha)
                return str(commit.hexsha)
            raise PublishError(
                f"pushing {path} was rejected {PUBLISH_ATTEMPTS} times"
                " because the branch kept moving"
            )
        finally:
            repo.close()


def _describe(exc: git.GitCommandError, url: str) -> str:
    """git's own words, without the command line (which only repeats what we asked)."""
    stderr = str(exc.stderr or "").strip().removeprefix("stderr:").strip().strip("'").strip()
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = "; ".join(lines[-3:]) if lines else f"git exited with status {exc.status}"
    if "timed out" in str(exc) or "kill_after_timeout" in str(exc):
        text = "git did not finish in time"
    return f"git {exc.command[1] if len(exc.command) > 1 else ''} on {_safe_url(url)}: {text}"


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return parts._replace(netloc=netloc).geturl()
    return url


class ProjectClones:
    """Users' projects, one bare clone per repository under `root`, fetched with the token of
    whoever asks (never stored); fetches of one repository take turns."""

    def __init__(self, root: Path, timeout: float) -> None:
        self.root = root
        self.timeout = timeout
        self._locks: dict[str, asyncio.Lock] = {}

    async def fetch(self, clone_url: str, branch: str, token: str) -> NotebookRepo:
        clone_dir = self.root / hashlib.sha256(clone_url.encode()).hexdigest()[:16]
        repo = NotebookRepo(
            clone_url, clone_dir / "repo.git", branch=branch, token=token, timeout=self.timeout
        )
        async with self._locks.setdefault(str(clone_dir), asyncio.Lock()):
            await repo.fetch()
        return repo
