"""People as other services see them: a caller's token, resolved by the gateway's WhoAmI.

Identities, project memberships and roles live in the gateway; sampler, quality,
inference and training forward the caller's token (over their own mTLS identity)
and cache the answer per token and project for a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from strata.common.authz import DirectoryUnavailable, Metadata, Standing
from strata.common.tokens import AuthError, bearer_token, hash_token
from strata.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ROLE_NAMES = {
    common_pb2.ROLE_ANNOTATOR: "annotator",
    common_pb2.ROLE_REVIEWER: "reviewer",
    common_pb2.ROLE_MANAGER: "manager",
}
STATUS_NAMES = {
    common_pb2.ANNOTATOR_STATUS_ACTIVE: "active",
    common_pb2.ANNOTATOR_STATUS_RETRAIN: "retrain",
    common_pb2.ANNOTATOR_STATUS_BLOCKED: "blocked",
}


def standing_of(who: gateway_pb2.WhoAmIResponse) -> Standing:
    """A WhoAmI answer as a Standing."""
    return Standing(
        who.annotator_id,
        admin=who.admin,
        role=ROLE_NAMES.get(who.role, "") if who.member else "",
        status=STATUS_NAMES.get(who.status, "active"),
        status_reason=who.status_reason,
    )


class RemoteDirectory:
    """Resolves tokens through the gateway, caching answers for `cache_s` seconds."""

    def __init__(
        self,
        gateway: gateway_pb2_grpc.AnnotationGatewayStub | None,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = gateway
        self.cache_s = cache_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Standing]] = {}
        self._lock = threading.Lock()

    def standing(self, metadata: Metadata, project: str) -> Standing:
        token = bearer_token(metadata)  # AuthError: missing or malformed
        key = (hash_token(token), project)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        if self.gateway is None:
            raise DirectoryUnavailable("cannot check tokens: STRATA_GATEWAY_ADDRESS is not set")
        try:
            who = self.gateway.WhoAmI(
                gateway_pb2.WhoAmIRequest(project=project),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=5.0,
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise AuthError(exc.details() or "token rejected") from None
            raise DirectoryUnavailable(
                f"cannot check your token: the gateway answered {code.name}; retry shortly"
            ) from None
        found = standing_of(who)
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = (now, found)
        return found
