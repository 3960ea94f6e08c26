"""The guard in front of notebook hosts: Traefik asks /auth/forward about every request to a
guarded host, and the answer lets it through, refuses it, or sends the browser to log in.

Logging in happens on the gateway (POST /auth/login, where the token is checked once and not
kept), which hands the browser a one-time ticket for the notebook host; the host's answer to
that ticket sets a session cookie valid for that host alone.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from aiohttp import web

from gateway.adapters.gitlab import REPORTER
from gateway.errors import BadRequest, RateLimited, Unauthorized
from gateway.models import Identity
from gateway.services.servers import Target
from gateway.sessions import SESSION_COOKIE
from gateway.settings import Settings
from gateway.web.auth import CLIENT, credential, identity_for, login_token, same_origin
from gateway.web.http import form_body
from gateway.web.keys import GITLAB, IDENTITY, SERVERS, SETTINGS, SIGNER
from gateway.web.middleware import error_response
from gateway.web.render import page

LOGIN_PATH = "/_gateway/login"  # on the notebook host; never reaches the notebook
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # one DNS label


async def forward_auth(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    # Only Traefik knows the key (it is in the address the routes name): nobody else can ask
    # on a browser's behalf, and the client Traefik saw is the one to count failures for.
    given = request.query.get("key", "").encode()
    if not hmac.compare_digest(given, settings.forward_auth_key().encode()):
        return _refuse(request, 403, "forbidden", "only the proxy asks here")
    forwarded_for = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    if forwarded_for:
        request[CLIENT] = forwarded_for
    host = request.headers.get("X-Forwarded-Host", "").split(":")[0].lower()
    uri = request.headers.get("X-Forwarded-Uri", "/")
    target = await request.app[SERVERS].target(host)
    if target is None:
        return _refuse(request, 403, "forbidden", "this host is not served here")
    path, _, query = uri.partition("?")
    if path == LOGIN_PATH:
        return _redeem(request, host, parse_qs(query).get("ticket", [""])[0])
    if target.kind == "published" and not settings.protect_published:
        return web.Response(status=200)
    # Jupyter trusts every request that carries its token, which Traefik adds: a page of
    # another host (another notebook's, on the same site) must not act with the owner's
    # cookie, nor open a kernel's websocket.
    if not same_origin(request, host):
        return _refuse(request, 403, "forbidden", "requests from other pages are refused")
    try:
        who = await _identify(request, host)
    except Unauthorized as exc:
        return _refuse(request, 401, "unauthorized", exc.message)
    except RateLimited as exc:
        return _refuse(request, 429, "rate_limited", exc.message, exc.headers)
    if who is not None and (who.admin or await _may_open(request, who, target)):
        return web.Response(status=200)
    if who is not None:
        return _refuse(request, 403, "forbidden", _not_yours(target))
    wants_page = "text/html" in request.headers.get("Accept", "")
    if wants_page and request.headers.get("X-Forwarded-Method", "GET") == "GET":
        back = _notebook_url(settings, host, uri)
        raise web.HTTPFound(f"{settings.gateway_url}/auth/login?{urlencode({'next': back})}")
    return _refuse(
        request,
        401,
        "unauthorized",
        "log in first: send your GitLab token or open the URL in a browser",
    )


async def login_page(request: web.Request) -> web.Response:
    return _page(request, _checked_next(request, request.query.get("next", "")))


async def login(request: web.Request) -> web.StreamResponse:
    token = await login_token(request)
    target_url = _checked_next(request, str((await form_body(request)).get("next", "")))
    if not token:
        return _page(request, target_url, "Paste a GitLab access token.", 400)
    try:
        who = await identity_for(request, token)
    except Unauthorized:
        return _page(request, target_url, "GitLab does not accept this token.", 401)
    parts = urlsplit(target_url)  # checked: it parses
    host = (parts.hostname or "").lower()
    target = await request.app[SERVERS].target(host)
    if target is None:
        return _page(request, target_url, "There is no notebook server at this address.", 404)
    if not (who.admin or await _may_open(request, who, target)):
        return _page(request, target_url, _not_yours(target).capitalize() + ".", 403)
    ticket = request.app[SIGNER].ticket(
        {
            "u": who.user_id,
            "admin": who.admin,
            "h": host,
            "next": parts.path + (f"?{parts.query}" if parts.query else ""),
        }
    )
    raise web.HTTPSeeOther(
        _notebook_url(request.app[SETTINGS], host, LOGIN_PATH) + "?ticket=" + quote(ticket)
    )


def _redeem(request: web.Request, host: str, ticket: str) -> web.StreamResponse:
    """The notebook host's side of the login: trade the ticket for a cookie of its own."""
    settings = request.app[SETTINGS]
    signer = request.app[SIGNER]
    payload = signer.redeem(ticket)
    if payload is None or payload.get("h") != host:
        return _refuse(
            request, 403, "forbidden", "this login link has expired or was used; log in again"
        )
    session = signer.sign(
        "session", {"u": payload["u"], "admin": payload["admin"], "h": host}, settings.session_ttl
    )
    # Absolute: Traefik would resolve a relative Location against the gateway's address.
    back = _notebook_url(settings, host, str(payload.get("next") or "/"))
    response = web.Response(status=302, headers={"Location": back})
    response.set_cookie(
        SESSION_COOKIE, session, max_age=int(settings.session_ttl), path="/", httponly=True,
        secure=settings.public_scheme == "https", samesite="Lax",
    )  # fmt: skip
    return response


def _notebook_url(settings: Settings, host: str, path: str) -> str:
    """An address on a notebook host as the gateway makes them: PUBLIC_SCHEME and PUBLIC_PORT,
    whatever a request's forwarded headers say."""
    port = f":{settings.public_port}" if settings.public_port else ""
    return f"{settings.public_scheme}://{host}{port}{path}"


async def _identify(request: web.Request, host: str) -> Identity | None:
    """From this host's session cookie, or from a token sent by an API client."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        payload = request.app[SIGNER].verify("session", cookie)
        if payload is not None and payload.get("h") == host:
            if payload.get("admin"):
                return Identity.administrator()
            return Identity(admin=False, user_id=int(payload["u"]), username="")
    token = credential(request)
    return await identity_for(request, token) if token else None


async def _may_open(request: web.Request, who: Identity, target: Target) -> bool:
    if target.kind == "user":
        return target.owner_id == who.user_id
    # A protected published notebook: anyone who may read the notebooks repository. A session
    # cookie is only issued after that check, so it carries the answer.
    if not who.token:
        return True
    gitlab = request.app.get(GITLAB)
    path = request.app[IDENTITY].path
    if gitlab is None or path is None:
        return False
    project = await gitlab.project(who.token, path)
    return project is not None and await gitlab.access_level(who.token, project.id) >= REPORTER


def _not_yours(target: Target) -> str:
    if target.kind == "published":
        return "opening this notebook needs read access to the notebooks repository"
    return "this notebook server belongs to someone else"


def _checked_next(request: web.Request, next_url: str) -> str:
    """Only an address the gateway itself would make for one of its notebook hosts (its
    scheme, one label below BASE_DOMAIN, its port, no user, nothing a browser reads
    otherwise than Python does): never an open redirect."""
    settings = request.app[SETTINGS]
    refused = BadRequest("the address to return to is not a notebook of this gateway")
    if not next_url or any(ch in next_url for ch in "\\@") or not next_url.isprintable():
        raise refused
    if any(ch.isspace() for ch in next_url):
        raise refused
    try:
        parts = urlsplit(next_url)
        port = parts.port
    except ValueError:
        raise refused from None
    label, dot, domain = (parts.hostname or "").partition(".")
    expected = f"{settings.public_scheme}://{label}.{domain}"
    if settings.public_port:
        expected += f":{settings.public_port}"
    if (
        parts.scheme != settings.public_scheme
        or not dot
        or domain != settings.base_domain
        or not _LABEL.fullmatch(label)
        or port != settings.public_port
        or f"{parts.scheme}://{parts.netloc}" != expected
        or not (parts.path == "" or parts.path.startswith("/"))
    ):
        raise refused
    return next_url


def _refuse(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="notebook-gateway"'}
    return error_response(request, status, code, message, None, headers)


def _page(request: web.Request, next_url: str, error: str = "", status: int = 200) -> web.Response:
    return page("login.html.j2", status, next=next_url, error=error, action="/auth/login")
