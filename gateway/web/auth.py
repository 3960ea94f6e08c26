"""Who is asking: the admin (AUTH_TOKEN, compared in constant time, or the session cookie the
status page's login gives) or a GitLab user (their own token, resolved with python-gitlab)."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.errors import Forbidden, RateLimited, Unauthorized
from gateway.models import Identity
from gateway.web.keys import GITLAB, RATE_LIMITER, SETTINGS, SIGNER

ADMIN_COOKIE = "notebook_gateway_admin"
ADMIN_PURPOSE = "admin"
# Sent by the status page's own scripts. Another site's page cannot send a custom header
# without a CORS preflight, which the gateway never grants: cookie-borne writes need it.
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def credential(request: web.Request) -> str | None:
    """The token of 'Authorization: Bearer <token>' (or 'token <token>', as renku clients send)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip():
        return token.strip()
    return None


async def login_token(request: web.Request) -> str:
    """The token a login form sent (the status page's or a notebook host's), within the
    login rate limit per client: a form is where tokens get guessed."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is not None and (wait := limiter.wait_time(f"login:{request.remote}")) > 0:
        raise RateLimited(wait)
    form = await request.post()
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
    token = credential(request)
    if token is None or not header.lower().startswith("bearer "):
        raise Unauthorized("the Authorization header must be 'Bearer <AUTH_TOKEN>'")
    if not is_admin_token(request, token):
        raise Unauthorized("invalid token")


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
    if is_admin_token(request, token):
        return Identity.administrator()
    gitlab = request.app.get(GITLAB)
    if gitlab is None:
        raise Unauthorized("invalid token (no GitLab is configured to check user tokens)")
    user = await gitlab.user(token)
    return Identity(admin=False, user_id=user.id, username=user.username, token=token)
