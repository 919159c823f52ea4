"""Bearer tokens: issued once, stored as a hash, resolved to a Principal per call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from strata.common.authz import Metadata, Standing
from strata.common.tokens import AuthError, bearer_token, hash_token, new_token
from strata.gateway.policy import Principal

__all__ = [
    "AuthError",
    "Authenticator",
    "LocalDirectory",
    "bearer_token",
    "hash_token",
    "new_token",
]

# A lookup returns (principal, expires_at, revoked) for a token hash, or None.
TokenLookup = Callable[[str], tuple[Principal, datetime, bool] | None]


class Authenticator:
    """Resolves tokens to principals, caching answers for `cache_s` seconds.

    Revoking a token or blocking an annotator takes effect at once on the
    replica that did it (`forget`) and within `cache_s` on the others.
    """

    def __init__(
        self, lookup: TokenLookup, cache_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lookup = lookup
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[Principal, datetime, bool] | None]] = {}
        self._lock = threading.Lock()

    def principal(
        self, metadata: Sequence[tuple[str, str | bytes]] | None, now: datetime
    ) -> Principal:
        """Who the call is from; raises AuthError."""
        return self.resolve(metadata, now)[0]

    def resolve(
        self, metadata: Sequence[tuple[str, str | bytes]] | None, now: datetime
    ) -> tuple[Principal, str, datetime]:
        """(who the call is from, their token's hash, its expiry); raises AuthError."""
        token_hash = hash_token(bearer_token(metadata))
        t = self._clock()
        with self._lock:
            hit = self._cache.get(token_hash)
        if hit is None or t - hit[0] > self._cache_s:
            found = self._lookup(token_hash)
            with self._lock:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[token_hash] = (t, found)
        else:
            found = hit[1]
        if found is None:
            raise AuthError("unknown bearer token: ask an admin for a token (IssueToken)")
        principal, expires_at, revoked = found
        if revoked:
            raise AuthError("this token was revoked: ask an admin for a new one")
        if expires_at <= now:
            raise AuthError(f"this token expired at {expires_at.isoformat()}: ask for a new one")
        return principal, token_hash, expires_at

    def forget(self, annotator_id: str | None = None) -> None:
        """Drop cached answers (all, or one annotator's) after a change made here."""
        with self._lock:
            if annotator_id is None:
                self._cache.clear()
                return
            for key, (_, found) in list(self._cache.items()):
                if found is not None and found[0].annotator_id == annotator_id:
                    del self._cache[key]


class LocalDirectory:
    """The gateway's own people directory: its Authenticator, read per project."""

    def __init__(self, auth: Authenticator, clock: Callable[[], datetime]) -> None:
        self.auth = auth
        self.clock = clock

    def standing(self, metadata: Metadata, project: str) -> Standing:
        principal = self.auth.principal(metadata, self.clock())
        member = principal.membership(project) if project else None
        if member is None or (principal.admin and project not in principal.projects):
            return Standing(principal.annotator_id, principal.admin)
        return Standing(
            principal.annotator_id,
            principal.admin,
            member.role,
            member.status,
            member.status_reason,
        )
