"""Browser sessions: the cookie that carries a session token, and the CSRF token bound
to it.

The session token is one the gateway issued (StartSession, RedeemSignInLink): hashed
there, scoped, revocable, audited. The web keeps nothing: the cookie is HttpOnly (no
script reads it) and SameSite=Strict (no other site sends it), and every state change
also needs the CSRF token, which is derived from the session token, so a page can hold
it without holding the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

COOKIE = "strata_session"
CSRF_HEADER = "x-csrf-token"
_CSRF_KEY = b"strata-web-csrf-v1"


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: one-way, so it reveals nothing about the session."""
    mac = hmac.new(_CSRF_KEY, session_token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_ok(session_token: str, presented: str | None) -> bool:
    """Whether `presented` is the CSRF token of `session_token`."""
    return bool(presented) and hmac.compare_digest(csrf_token(session_token), presented or "")


def cookie_attributes(secure: bool, max_age: int) -> dict[str, object]:
    """How the session cookie is set (Starlette's set_cookie keywords)."""
    return {
        "key": COOKIE,
        "max_age": max_age,
        "path": "/",
        "httponly": True,
        "samesite": "strict",
        "secure": secure,
    }
