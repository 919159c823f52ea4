"""Proofs of identity that are not a token: a service's signed name on a plaintext stack,
and the count of failed sign-ins that throttles a source."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable

# The metadata key a service's signed name travels in (plaintext stacks only).
SERVICE_HEADER = "x-strata-service"


# -- plaintext service identity ----------------------------------------------------------


class ServiceKeys:
    """Service identities on a plaintext stack: an HMAC of (service, expiry) under a secret
    every service holds (STRATA_SERVICE_SECRET). Anyone with the secret can act as any
    service, which is why TLS, where each identity is a private key of its own, is the
    default."""

    TTL_S = 300

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"strata-service-identity:" + secret.encode()).digest()
        self._clock = clock

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def sign(self, service: str) -> str:
        """The metadata value that names `service` for the next few minutes."""
        expires = int(self._clock()) + self.TTL_S
        return f"{service}.{expires}.{self._mac(f'{service}.{expires}')}"

    def verify(self, value: str) -> str | None:
        """The service a value names, if its signature holds and it has not expired."""
        service, _, rest = value.partition(".")
        expires, _, mac = rest.partition(".")
        if not service or not expires.isdigit() or not mac:
            return None
        if int(expires) < self._clock():
            return None
        if not hmac.compare_digest(mac, self._mac(f"{service}.{expires}")):
            return None
        return service


# -- failed sign-ins -----------------------------------------------------------------------


class FailureLimiter:
    """Failed sign-ins per source in a sliding minute; past `per_minute`, a source is
    refused before its token is even looked at. A throttled source's refusals are
    audited once a minute, with their count, not one row each."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._throttled: dict[str, tuple[float, int]] = {}  # source -> (audited at, since)
        self._lock = threading.Lock()

    def _recent(self, source: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(source, ()) if now - t < self.WINDOW_S]
        if kept:
            self._failures[source] = kept
        else:
            self._failures.pop(source, None)
        return kept

    def throttled(self, source: str) -> bool:
        with self._lock:
            return len(self._recent(source, self._clock())) >= self.per_minute

    def failed(self, source: str) -> None:
        now = self._clock()
        with self._lock:
            self._recent(source, now)
            self._failures.setdefault(source, []).append(now)
            if len(self._failures) > 100_000:  # a flood of sources: forget the oldest
                self._failures.clear()

    def audit_due(self, source: str) -> int | None:
        """The throttled refusals to audit now for `source` (None: not yet)."""
        now = self._clock()
        with self._lock:
            audited_at, count = self._throttled.get(source, (float("-inf"), 0))
            count += 1
            if now - audited_at >= self.WINDOW_S:
                self._throttled[source] = (now, 0)
                return count
            self._throttled[source] = (audited_at, count)
            return None
