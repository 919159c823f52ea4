"""Who may call a service's guarded RPCs: the bearer token, checked by the gateway's WhoAmI.

Quality's reports and review decisions (reviewers, admins) and inference's
model rollback (admins) use it (DESIGN §8).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from strata.common.tokens import AuthError, bearer_token, hash_token
from strata.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ROLE_NAMES = {
    common_pb2.ROLE_ANNOTATOR: "annotator",
    common_pb2.ROLE_REVIEWER: "reviewer",
    common_pb2.ROLE_ADMIN: "admin",
}


@dataclass(frozen=True)
class Caller:
    annotator_id: str
    role: str
    blocked: bool


class AccessDenied(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class AccessCheck:
    """Resolves a caller's token through the gateway, caching answers briefly."""

    def __init__(
        self, gateway: gateway_pb2_grpc.AnnotationGatewayStub | None, cache_s: float = 5.0
    ) -> None:
        self.gateway = gateway
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def caller(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Caller:
        try:
            token = bearer_token(metadata)
        except AuthError as exc:
            raise AccessDenied(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        key = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        if self.gateway is None:
            raise AccessDenied(
                grpc.StatusCode.UNAVAILABLE,
                "cannot check tokens: STRATA_GATEWAY_ADDRESS is not set",
            )
        try:
            who = self.gateway.WhoAmI(
                gateway_pb2.WhoAmIRequest(),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=5.0,
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise AccessDenied(code, exc.details() or "token rejected") from None
            raise AccessDenied(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot check your token: the gateway answered {code.name}; retry shortly",
            ) from None
        found = Caller(
            who.annotator_id,
            ROLE_NAMES.get(who.role, "annotator"),
            who.status == common_pb2.ANNOTATOR_STATUS_BLOCKED,
        )
        with self._lock:
            self._cache[key] = (now, found)
        return found

    def require(
        self, metadata: Sequence[tuple[str, str | bytes]] | None, roles: tuple[str, ...]
    ) -> Caller:
        """The caller, if their role is one of `roles` and they are not blocked."""
        found = self.caller(metadata)
        if found.role not in roles:
            raise AccessDenied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this call needs the {' or '.join(roles)} role; "
                f"{found.annotator_id} is {found.role}",
            )
        if found.blocked:
            raise AccessDenied(
                grpc.StatusCode.PERMISSION_DENIED, f"{found.annotator_id} is blocked"
            )
        return found
