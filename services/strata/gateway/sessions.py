"""Browser sessions: short-lived tokens the web service keeps in a cookie, and one-time
sign-in links a manager hands to a member.

A session token is an ordinary token of kind 'session': hashed, scoped, revocable,
audited. It never outlives the token that started it, and signing out revokes it. A
sign-in link's code is stored hashed, works once, for one project, for minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import grpc

from strata.common.authz import Guard, action_entry, current_caller
from strata.common.db import Database
from strata.gateway import people
from strata.gateway.admin_rpcs import bounded_ttl, no_person
from strata.gateway.auth import Authenticator, hash_token, new_token
from strata.v1 import gateway_pb2

DEFAULT_SESSION_TTL_S = 12 * 3600
MAX_SESSION_TTL_S = 24 * 3600
DEFAULT_LINK_TTL_S = 15 * 60
MAX_LINK_TTL_S = 86_400


class SessionRpcs:
    """Mixed into GatewayServicer, whose constructor sets these attributes."""

    db: Database
    auth: Authenticator
    guard: Guard
    clock: Callable[[], datetime]

    def StartSession(
        self, request: gateway_pb2.StartSessionRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.StartSessionResponse:
        principal, token_hash, token_expires = self.auth.resolve(
            context.invocation_metadata(), self.clock()
        )
        ttl = bounded_ttl(context, request.ttl_seconds, DEFAULT_SESSION_TTL_S, MAX_SESSION_TTL_S)
        expires_at = min(self.clock() + timedelta(seconds=ttl), token_expires)
        session = new_token()
        with self.db.transaction() as conn:
            scope = people.token_scope(conn, token_hash)
            people.insert_token(
                conn, principal.annotator_id, hash_token(session), expires_at, "session", scope
            )
            people.audit(
                conn,
                action_entry(
                    "gateway",
                    "start_session",
                    principal.annotator_id,
                    expires_at=expires_at.isoformat(),
                ),
            )
        reply = gateway_pb2.StartSessionResponse(
            session_token=session, annotator_id=principal.annotator_id, admin=principal.admin
        )
        reply.expires_at.FromDatetime(expires_at)
        return reply

    def EndSession(
        self, request: gateway_pb2.EndSessionRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.EndSessionResponse:
        principal, token_hash, _ = self.auth.resolve(context.invocation_metadata(), self.clock())
        with self.db.transaction() as conn:
            revoked = people.revoke_token(conn, token_hash)
            people.audit(conn, action_entry("gateway", "end_session", principal.annotator_id))
        self.auth.forget(principal.annotator_id)
        return gateway_pb2.EndSessionResponse(revoked=revoked)

    def CreateSignInLink(
        self, request: gateway_pb2.CreateSignInLinkRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.CreateSignInLinkResponse:
        caller = current_caller()
        ttl = bounded_ttl(context, request.ttl_seconds, DEFAULT_LINK_TTL_S, MAX_LINK_TTL_S)
        with self.db.transaction() as conn:
            found = people.person(conn, request.annotator_id)
        if found is None or found[0] or request.project not in found[1]:
            # An admin, or someone outside the project, is nobody here.
            self.guard.refuse_current(
                grpc.StatusCode.NOT_FOUND,
                f"{no_person(request.annotator_id)} in project {request.project}",
                request.project,
                reason="not a member of the project",
            )
        code = new_token()
        expires_at = self.clock() + timedelta(seconds=ttl)
        with self.db.transaction() as conn:
            people.insert_sign_in_link(
                conn,
                hash_token(code),
                request.annotator_id,
                request.project,
                caller.name,
                expires_at,
            )
            people.audit(
                conn,
                action_entry(
                    "gateway", "create_sign_in_link", request.annotator_id, ttl_seconds=ttl
                ),
            )
        reply = gateway_pb2.CreateSignInLinkResponse(code=code)
        reply.expires_at.FromDatetime(expires_at)
        return reply

    def RedeemSignInLink(
        self, request: gateway_pb2.RedeemSignInLinkRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.RedeemSignInLinkResponse:
        caller = current_caller()
        limiter = self.guard.limiter
        if limiter.throttled(caller.source):
            self.guard.refuse_current(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many failed sign-ins from {caller.source}; wait a minute and try again",
            )
        ttl = bounded_ttl(context, request.ttl_seconds, DEFAULT_SESSION_TTL_S, MAX_SESSION_TTL_S)
        now = self.clock()
        session = new_token()
        expires_at = now + timedelta(seconds=ttl)
        with self.db.transaction() as conn:
            used = (
                people.use_sign_in_link(conn, hash_token(request.code), now)
                if request.code
                else None
            )
            if used is not None:
                annotator_id, project = used
                people.insert_token(
                    conn, annotator_id, hash_token(session), expires_at, "session", [project]
                )
                people.audit(
                    conn,
                    action_entry("gateway", "redeem_sign_in_link", annotator_id, project),
                )
        if used is None:
            limiter.failed(caller.source)
            self.guard.refuse_current(
                grpc.StatusCode.UNAUTHENTICATED,
                "this sign-in link is unknown, used or expired: ask your manager for a new one",
            )
        reply = gateway_pb2.RedeemSignInLinkResponse(
            session_token=session, annotator_id=used[0], admin=False
        )
        reply.expires_at.FromDatetime(expires_at)
        return reply
