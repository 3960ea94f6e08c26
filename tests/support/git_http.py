"""A git smart-HTTP server (git http-backend behind aiohttp) that wants a token, as GitLab does."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

SEEN_PASSWORDS = web.AppKey("seen_passwords", list[str])

# (repository path such as "group/project.git", password, pushing?) -> the repository's
# path on disk (under the project root) and the user's access level, or None to refuse.
Authorize = Callable[[str, str, bool], tuple[str, int] | None]


async def serve_git(
    request: web.Request,
    project_root: Path,
    authorize: Authorize,
    seen: list[str],
    prefix: str = "",
) -> web.StreamResponse:
    """One git smart-HTTP request, after HTTP Basic auth (the password is the token). The
    user's level reaches the repository's hooks as GL_ACCESS_LEVEL."""
    header = request.headers.get("Authorization", "")
    password = ""
    if header.startswith("Basic "):
        _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        seen.append(password)
    path = request.path.removeprefix(prefix)
    asked, _, rest = path.lstrip("/").partition(".git/")
    pushing = "git-receive-pack" in path or request.query.get("service") == "git-receive-pack"
    allowed = authorize(f"{asked}.git", password, pushing) if password else None
    if allowed is None:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="GitLab"'})
    repository, level = allowed
    env = {
        "PATH": os.environ["PATH"],
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "REMOTE_USER": "user",  # enables receive-pack (push)
        "REMOTE_ADDR": "127.0.0.1",
        "GL_ACCESS_LEVEL": str(level),
        "REQUEST_METHOD": request.method,
        "PATH_INFO": f"/{repository}/{rest}",
        "QUERY_STRING": request.query_string,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
        "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
    }
    body = await request.read()
    process = await asyncio.create_subprocess_exec(
        "git", "http-backend", env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate(body)
    head, _, payload = out.partition(b"\r\n\r\n")
    status, headers = 200, {}
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name] = value.strip()
    return web.Response(status=status, body=payload, headers=headers)


def git_http_app(project_root: Path, token: str) -> web.Application:
    """Serve the bare repositories under project_root to whoever has `token`."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        def authorize(repository: str, password: str, _: bool) -> tuple[str, int] | None:
            return (repository, 40) if password == token else None

        return await serve_git(request, project_root, authorize, seen)

    app = web.Application(client_max_size=1024**3)
    app[SEEN_PASSWORDS] = seen
    app.router.add_route("*", "/{path:.*}", handle)
    return app
