"""Who is asking: the admin (AUTH_TOKEN, compared in constant time, or the session cookie the
status page's login gives) or a GitLab user (their own token, resolved with python-gitlab).

Every failed credential check counts against the client (AUTH_FAILURE_LIMIT a minute); past
that, its checks are refused with 429 before any token is looked at, or GitLab asked."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

from gateway.errors import Forbidden, RateLimited, Unauthorized
from gateway.models import Identity
from gateway.web.http import form_body
from gateway.web.keys import AUTH_FAILURES, GITLAB, RATE_LIMITER, SETTINGS, SIGNER

ADMIN_COOKIE = "notebook_gateway_admin"
ADMIN_PURPOSE = "admin"
# Sent by the status page's own scripts. Another site's page cannot send a custom header
# without a CORS preflight, which the gateway never grants: cookie-borne writes need it.
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CLIENT = web.RequestKey("client", str)  # who is asking, when not the peer itself


def credential(request: web.Request) -> str | None:
    """The token of 'Authorization: Bearer <token>' (or 'token <token>', as renku clients send)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip():
        return token.strip()
    return None


def client_of(request: web.Request) -> str:
    """The client's address: the peer's, or the one Traefik saw (for its forward-auth)."""
    return request.get(CLIENT) or request.remote or ""


def refuse_guessing(request: web.Request) -> None:
    """429 for a client past its failed checks, before its credential is looked at."""
    limiter = request.app.get(AUTH_FAILURES)
    if limiter is not None and (wait := limiter.blocked_for(client_of(request))) > 0:
        raise RateLimited(wait)


def failed_check(request: web.Request, message: str) -> Unauthorized:
    """Count a failed check against the client; the error to raise."""
    limiter = request.app.get(AUTH_FAILURES)
    if limiter is not None:
        limiter.spend(client_of(request))
    return Unauthorized(message)


def same_origin(request: web.Request, host: str | None = None) -> bool:
    """Whether a browser's request comes from a page of `host` (the request's own by
    default): its Origin names that host, or it sends none and its Sec-Fetch-Site does not
    say another site. Ports and schemes are not compared: a TLS proxy in front changes
    both. Clients other than browsers send neither header."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    expected = _hostname(host or request.host)
    return expected is not None and _hostname(origin.partition("://")[2]) == expected


def _hostname(netloc: str) -> str | None:
    try:
        return urlsplit(f"//{netloc}").hostname
    except ValueError:
        return None


async def login_token(request: web.Request) -> str:
    """The token a login form sent (the status page's or a notebook host's), within the
    login rate limit per client (a form is where tokens get guessed), from a page of the
    gateway's own: another site's page must not log a browser in."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is not None and (wait := limiter.wait_time(f"login:{client_of(request)}")) > 0:
        raise RateLimited(wait)
    refuse_guessing(request)
    if not same_origin(request):
        raise Forbidden("a login must come from the gateway's own page")
    form = await form_body(request)
    return str(form.get("token", "")).strip()


def is_admin_token(request: web.Request, token: str) -> bool:
    expected = request.app[SETTINGS].auth_token.get_secret_value().encode()
    return hmac.compare_digest(token.encode(), expected)


def admin_session(request: web.Request) -> bool:
    """Whether the request carries a valid admin session cookie of the status page; writes
    with it must also carry the status page's header."""
    cookie = request.cookies.get(ADMIN_COOKIE)
    if not cookie or request.app[SIGNER].verify(ADMIN_PURPOSE, cookie) is None:
        return False
    if request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER):
        raise Forbidden(f"a change made with the session cookie must send {CSRF_HEADER}")
    return True


def require_admin(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    if not header and admin_session(request):
        return
    if not header:
        raise Unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <AUTH_TOKEN>'"
        )
    refuse_guessing(request)
    token = credential(request)
    if token is None or not header.lower().startswith("bearer "):
        raise failed_check(request, "the Authorization header must be 'Bearer <AUTH_TOKEN>'")
    if not is_admin_token(request, token):
        raise failed_check(request, "invalid token")


async def authenticate(request: web.Request) -> Identity:
    """The admin, or the GitLab user whose token this is."""
    token = credential(request)
    if token is None and admin_session(request):
        return Identity.administrator()
    if token is None:
        raise Unauthorized("missing credentials; send 'Authorization: Bearer <your GitLab token>'")
    return await identity_for(request, token)


async def identity_for(request: web.Request, token: str) -> Identity:
    """The admin if this is AUTH_TOKEN, else the GitLab user it belongs to (Unauthorized if
    GitLab does not know it)."""
    refuse_guessing(request)
    if is_admin_token(request, token):
        return Identity.administrator()
    gitlab = request.app.get(GITLAB)
    if gitlab is None:
        raise failed_check(request, "invalid token (no GitLab is configured to check user tokens)")
    try:
        user = await gitlab.user(token)
    except Unauthorized as exc:
        raise failed_check(request, exc.message) from None
    return Identity(admin=False, user_id=user.id, username=user.username, token=token)
