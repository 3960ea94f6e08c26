"""Which files of a project folder are notebooks, which are shared, and which are refused.

Works on a listing of git tree entries, so it never touches a file system: a symlink is just an
entry whose target is resolved here, inside the project folder or not at all.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from gateway.errors import InvalidRepository
from gateway.models import ProjectSnapshot, RepoFile
from gateway.naming import NOTEBOOK_SUFFIX

REQUIREMENTS = "requirements.txt"
MAX_LINK_HOPS = 8


@dataclass(frozen=True)
class TreeEntry:
    path: str  # relative to the project folder
    blob: str
    size: int
    executable: bool = False
    link_target: str | None = None  # set for symlinks


@dataclass(frozen=True)
class ContextLimits:
    max_file_size: int
    max_context_size: int
    max_context_files: int


def is_hidden(path: str) -> bool:
    """Hidden files and folders (including .ipynb_checkpoints) never reach an image."""
    return any(part.startswith(".") for part in path.split("/"))


def is_notebook(path: str) -> bool:
    return path.endswith(NOTEBOOK_SUFFIX) and not is_hidden(path)


def notebook_problem(data: bytes) -> str | None:
    """Why these bytes are not a Jupyter notebook, or None if they are one."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"it is not valid JSON ({exc})"
    if not isinstance(document, dict) or not isinstance(document.get("nbformat"), int):
        return "it has no nbformat version"
    cells = "cells" if document["nbformat"] >= 4 else "worksheets"
    if not isinstance(document.get(cells), list):
        return f"it has no {cells} list"
    return None


def snapshot(
    project: str, commit: str, entries: list[TreeEntry], limits: ContextLimits
) -> ProjectSnapshot:
    """Classify a project's files; raise InvalidRepository listing every refused file."""
    by_path = {entry.path: entry for entry in entries}
    problems: list[str] = []
    files: list[RepoFile] = []
    for entry in sorted(entries, key=lambda e: e.path):
        if is_hidden(entry.path):
            continue
        if not _is_utf8(entry.path):
            problems.append(f"{entry.path!r}: the file name is not valid UTF-8")
            continue
        resolved = _resolve(entry, by_path, problems)
        if resolved is None:
            continue
        if resolved.size > limits.max_file_size:
            problems.append(
                f"{entry.path}: {resolved.size} bytes is over the {limits.max_file_size}-byte limit"
            )
            continue
        files.append(RepoFile(entry.path, resolved.blob, resolved.size, resolved.executable))

    notebooks = tuple(f for f in files if is_notebook(f.path))
    shared = tuple(f for f in files if not is_notebook(f.path))
    shared_size = sum(f.size for f in shared)
    largest = max((f.size for f in notebooks), default=0)
    if shared_size + largest > limits.max_context_size:
        problems.append(
            f"the build context would hold {shared_size + largest} bytes, "
            f"over the {limits.max_context_size}-byte limit"
        )
    if len(shared) + 1 > limits.max_context_files:
        problems.append(
            f"the build context would hold {len(shared) + 1} files, "
            f"over the {limits.max_context_files}-file limit"
        )
    if problems:
        raise InvalidRepository(
            f"project {project!r} has files that cannot go into an image: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            detail={"problems": problems},
        )
    requirements = next((f for f in shared if f.path == REQUIREMENTS), None)
    return ProjectSnapshot(project, commit, notebooks, shared, requirements)


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept as surrogates by the git adapter
        return False
    return True


def _resolve(
    entry: TreeEntry, by_path: dict[str, TreeEntry], problems: list[str]
) -> TreeEntry | None:
    """Follow symlinks within the project folder; report and drop anything else."""
    current = entry
    for _ in range(MAX_LINK_HOPS):
        if current.link_target is None:
            return current
        target = current.link_target
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(current.path), target))
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            problems.append(
                f"{entry.path}: symlink to {target!r} points outside the project folder"
            )
            return None
        found = by_path.get(joined)
        if found is None or is_hidden(joined):
            problems.append(
                f"{entry.path}: symlink to {target!r} does not point to a file of the project"
            )
            return None
        current = found
    problems.append(f"{entry.path}: too many levels of symlinks")
    return None
