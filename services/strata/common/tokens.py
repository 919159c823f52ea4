"""Bearer tokens on the wire: the format every service reads from gRPC metadata.

The gateway issues tokens and owns identities; other services forward a
caller's token to the gateway's WhoAmI instead of reading its tables.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

TOKEN_PREFIX = "stk_"
_MAX_TOKEN_CHARS = 256


class AuthError(Exception):
    """The call carries no usable identity (UNAUTHENTICATED)."""


def new_token() -> str:
    """A fresh bearer token (256 random bits); only its hash is ever stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is as safe as a slow one here.
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token from `authorization: Bearer <token>` metadata; raises AuthError."""
    values = [v for k, v in (metadata or ()) if k.lower() == "authorization"]
    if not values:
        raise AuthError("no bearer token: send metadata 'authorization: Bearer <token>'")
    if len(values) > 1:
        raise AuthError("more than one authorization header: send exactly one")
    raw = values[0]
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("malformed authorization metadata: expected 'Bearer <token>'")
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_CHARS or " " in token:
        raise AuthError("malformed bearer token: Strata tokens start with 'stk_'")
    return token
