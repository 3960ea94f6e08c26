"""The status page: GET / in a browser (JSON for anything else), its live parts, and the admin
login that lets the page redeploy, stop and read logs with AUTH_TOKEN kept out of the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.models import Identity
from gateway.schemas import Server, StatusOverview, Volume
from gateway.web import views
from gateway.web.auth import (
    ADMIN_COOKIE,
    ADMIN_PURPOSE,
    admin_session,
    is_admin_token,
    login_token,
    require_admin,
)
from gateway.web.handlers import index_json
from gateway.web.keys import SERVERS, SETTINGS, SIGNER, STATUS, STORE
from gateway.web.render import page

STATIC = Path(__file__).resolve().parent.parent / "static"


async def index(request: web.Request) -> web.Response:
    if "text/html" not in request.headers.get("Accept", ""):
        return index_json(request)
    admin = admin_session(request)
    if _hidden(request, admin):
        return _page(request, admin=False, overview=None)
    return _page(request, admin, await _context(request, admin))


async def status(request: web.Request) -> web.Response:
    admin = _viewer(request)
    return views.answer(await _context(request, admin))


async def board(request: web.Request) -> web.Response:
    """The page's changing part, rendered by the same template the page is."""
    admin = _viewer(request)
    overview = await _context(request, admin)
    return page("status_board.html.j2", **_shown(overview))


async def log_in(request: web.Request) -> web.StreamResponse:
    if not is_admin_token(request, await login_token(request)):
        return _page(
            request, False, None, error="That is not the gateway's AUTH_TOKEN.", status=401
        )
    settings = request.app[SETTINGS]
    session = request.app[SIGNER].revocable(ADMIN_PURPOSE, {"admin": True}, settings.session_ttl)
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        ADMIN_COOKIE, session, max_age=int(settings.session_ttl), path="/", httponly=True,
        secure=settings.gateway_url.startswith("https:"), samesite="Strict",
    )  # fmt: skip
    raise response


async def log_out(request: web.Request) -> web.StreamResponse:
    """The session is taken back on the gateway, not only forgotten by this browser: a copy
    of the cookie stops working too. Like every change made with it, it needs the page's
    header."""
    cookie = request.cookies.get(ADMIN_COOKIE, "")
    if admin_session(request):  # refuses a cookie-borne change without the header
        revoked = request.app[SIGNER].revoke(ADMIN_PURPOSE, cookie)
        if revoked is not None:
            await request.app[STORE].revoke_session(*revoked)
    response = web.Response(status=204)
    response.del_cookie(ADMIN_COOKIE, path="/")
    return response


def _viewer(request: web.Request) -> bool:
    """Whether an admin asks; with PROTECT_PUBLISHED only admins see the notebooks at all."""
    admin = bool(request.headers.get("Authorization")) or admin_session(request)
    if admin or _hidden(request, admin):
        require_admin(request)  # checks the token, or refuses with the usual message
    return admin


def _hidden(request: web.Request, admin: bool) -> bool:
    return request.app[SETTINGS].protect_published and not admin


async def _context(request: web.Request, admin: bool) -> StatusOverview:
    deployments = await request.app[STATUS].overview()
    servers: list[Server] = []
    volumes: list[Volume] = []
    if admin:
        views = await request.app[SERVERS].list_servers(Identity.administrator(), {})
        servers = [v for v in views.values() if v.annotations["user"]]
        volumes = await request.app[SERVERS].volumes()
    return StatusOverview(admin=admin, servers=servers, volumes=volumes, **dict(deployments))


def _shown(overview: StatusOverview) -> dict[str, Any]:
    """What the templates show of the overview."""
    return {
        "admin": overview.admin,
        "overview": overview,
        "servers": overview.servers,
        "volumes": overview.volumes,
    }


def _page(
    request: web.Request,
    admin: bool,
    overview: StatusOverview | None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    settings = request.app[SETTINGS]
    shown = _shown(overview) if overview else {"overview": None, "servers": [], "volumes": []}
    return page(
        "status.html.j2",
        status,
        **{**shown, "admin": admin},
        error=error,
        version=__version__,
        base_domain=settings.base_domain,
        protected=settings.protect_published,
    )
