"""The admin dashboard's sign-in: a session cookie and CSRF tokens, signed with a key derived
from the admin key (rotating the admin key signs every session out).

The session cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page
sends it), limited to ``/admin`` and Secure over HTTPS. Every action (signing in, signing out,
a rollback) carries a CSRF token: the sign-in form a token bound to a pre-session cookie
(double submit), a signed-in page one bound to its session, sent back in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from service.settings import Settings

SESSION_COOKIE = "seal_admin_session"
LOGIN_COOKIE = "seal_admin_login"
SESSION_SECONDS = 8 * 3600
COOKIE_PATH = "/admin"


def _key(settings: Settings) -> bytes:
    admin = settings.ensure_admin_key().encode()
    return hmac.new(admin, b"seal admin dashboard sessions", hashlib.sha256).digest()


def _sign(settings: Settings, message: str) -> str:
    return hmac.new(_key(settings), message.encode(), hashlib.sha256).hexdigest()


def key_is_admin(settings: Settings, key: str) -> bool:
    return settings.is_admin_key(key)


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int


def new_session(settings: Settings, *, now: float | None = None) -> str:
    """A session cookie's value: its expiry, a random nonce, their signature."""
    expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
    nonce = secrets.token_urlsafe(16)
    body = f"{expires}.{nonce}"
    return f"{body}.{_sign(settings, 'session:' + body)}"


def read_session(
    settings: Settings, value: str | None, *, now: float | None = None
) -> Session | None:
    """The session a cookie holds, or None when it is missing, forged or expired."""
    if not value or value.count(".") != 2:
        return None
    expires, nonce, signature = value.split(".")
    body = f"{expires}.{nonce}"
    if not hmac.compare_digest(signature.encode(), _sign(settings, "session:" + body).encode()):
        return None
    if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
        return None
    return Session(nonce=nonce, expires=int(expires))


def csrf_token(settings: Settings, session: Session) -> str:
    """The CSRF token of a signed-in page: bound to its session."""
    return _sign(settings, "csrf:" + session.nonce)


def csrf_ok(settings: Settings, session: Session, token: str | None) -> bool:
    expected = csrf_token(settings, session).encode()
    return bool(token) and hmac.compare_digest((token or "").encode(), expected)


def new_login_token() -> str:
    """The sign-in form's token, also set as the pre-session cookie (double submit)."""
    return secrets.token_urlsafe(24)
