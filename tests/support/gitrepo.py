"""A real git remote (a bare repository) and a working clone that plays the notebook authors."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BRANCH = "main"
AUTHOR = {
    "GIT_AUTHOR_NAME": "Notebook Author",
    "GIT_AUTHOR_EMAIL": "author@example.org",
    "GIT_COMMITTER_NAME": "Notebook Author",
    "GIT_COMMITTER_EMAIL": "author@example.org",
}


@dataclass(frozen=True)
class Symlink:
    target: str


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **AUTHOR},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


def notebook(*code_cells: str) -> bytes:
    """A minimal nbformat 4 notebook with these code cells."""
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": [code],
        }
        for code in code_cells
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.dumps(
        {
            "cells": cells,
            "metadata": {"kernelspec": kernelspec},
            "nbformat": 4,
            "nbformat_minor": 4,
        },
        indent=1,
    ).encode()


class GitRemote:
    def __init__(self, root: Path, name: str = "remote.git") -> None:
        self.bare = root / name
        self.work = root / f"{name}-author"
        git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(self.bare))
        git("clone", "--quiet", str(self.bare), str(self.work))
        git("checkout", "--quiet", "-B", BRANCH, cwd=self.work)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(
        self, files: Mapping[str, bytes | Symlink | None], message: str = "Change notebooks"
    ) -> str:
        """Write (bytes), link (Symlink) or delete (None) files, commit and push them."""
        if self.head():
            git("pull", "--quiet", "--ff-only", "origin", BRANCH, cwd=self.work)
        for name, content in files.items():
            path = self.work / name
            if content is None:
                git("rm", "--quiet", "-r", "--", name, cwd=self.work)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                path.unlink()
            if isinstance(content, Symlink):
                path.symlink_to(content.target)
            else:
                path.write_bytes(content)
            git("add", "--", name, cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "--quiet", "origin", f"HEAD:{BRANCH}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def head(self) -> str | None:
        try:
            return git("--git-dir", str(self.bare), "rev-parse", f"refs/heads/{BRANCH}")
        except RuntimeError:
            return None

    def read(self, path: str) -> str | None:
        """A file's content on the remote's branch tip."""
        try:
            return git("--git-dir", str(self.bare), "show", f"{BRANCH}:{path}")
        except RuntimeError:
            return None

    def show(self, rev: str, fmt: str) -> str:
        """`git show -s --format=fmt rev` on the remote."""
        return git("--git-dir", str(self.bare), "show", "-s", f"--format={fmt}", rev)

    def log(self, *args: str) -> list[str]:
        fmt = "--format=%H%x09%an%x09%ae%x09%s"
        out = git("--git-dir", str(self.bare), "log", fmt, *args, BRANCH)
        return out.splitlines() if out else []

    def revs(self, before: str, after: str) -> list[str]:
        """The commits of a push from `before` to `after`, oldest first (all of them for a
        new branch, whose `before` is zeros)."""
        span = after if set(before) == {"0"} else f"{before}..{after}"
        out = git("--git-dir", str(self.bare), "rev-list", "--reverse", span)
        return out.splitlines() if out else []

    def changes(self, sha: str) -> dict[str, list[str]]:
        """What a commit added (A), modified (M) and removed (D)."""
        out = git(
            "--git-dir", str(self.bare), "diff-tree", "--root", "--no-commit-id", "-r",
            "--name-status", sha,
        )  # fmt: skip
        found: dict[str, list[str]] = {}
        for line in out.splitlines():
            status, _, path = line.partition("\t")
            found.setdefault(status[:1], []).append(path)
        return found

    def move(self, bare: Path) -> None:
        """The repository moved (a project renamed): the author's clone follows."""
        self.bare.rename(bare)
        self.bare = bare
        git("remote", "set-url", "origin", str(bare), cwd=self.work)
