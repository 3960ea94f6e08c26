"""A stand-in GitLab for `make demo` (the one the tests use): a user `demo` with developer access
to a project `demo/examples` holding examples/notebooks. Never for real use.

    python scripts/demo_gitlab.py ROOT PORT TOKEN_FILE
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from aiohttp import web

ROOT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_DIR))

from tests.support.gitlab_server import DEVELOPER, GitLab  # noqa: E402


def main(root: Path, port: int, token_file: Path) -> None:
    lab = GitLab(root)
    token = "glpat-demo-" + secrets.token_hex(12)
    user = lab.user("demo", token)
    project = lab.project("demo/examples", {user: DEVELOPER})
    examples = ROOT_DIR / "examples" / "notebooks"
    files = {
        str(p.relative_to(examples)): p.read_bytes() for p in examples.rglob("*") if p.is_file()
    }
    commit = project.remote.commit(files, "Example notebooks")
    token_file.write_text(f"{token}\n{commit}\n")
    token_file.chmod(0o600)
    web.run_app(lab.app(), host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
