"""The gateway's people RPCs: persons, tokens, project memberships, status and the audit log.

Admins act everywhere. A manager acts in the projects they manage: they see only the
people who are members there, and a token they issue reaches only those projects (its
scope), so managing one project never opens another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from strata.common.authz import Guard, action_entry, current_caller, current_rpc
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.grpcserver import abort
from strata.gateway import people, store
from strata.gateway.auth import Authenticator, hash_token, new_token
from strata.gateway.policy import PROJECT_ROLES, ROLE_ENUM, STATUS_ENUM, STATUSES
from strata.v1 import common_pb2, gateway_pb2

_ANNOTATOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_TOKEN_TTL_S = 90 * 86_400
DEFAULT_TOKEN_TTL_S = 30 * 86_400
MAX_AUDIT_ROWS = 1000


def _rpc_name() -> str:
    return current_rpc().rsplit("/", 1)[-1]


def bounded_ttl(context: grpc.ServicerContext, requested: int, default: int, most: int) -> int:
    """A lifetime in seconds: `default` when 0, else between a minute and `most`."""
    ttl = requested or default
    if not 60 <= ttl <= most:
        abort(
            context,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"ttl_seconds must be between 60 and {most}, got {ttl}",
        )
    return ttl


def no_person(annotator_id: str) -> str:
    return f"no annotator {annotator_id!r}"


class PeopleRpcs:
    """Mixed into GatewayServicer, whose constructor sets these attributes."""

    db: Database
    auth: Authenticator
    guard: Guard
    contracts: ContractCache
    clock: Callable[[], datetime]

    # -- helpers -----------------------------------------------------------------

    def _visible_projects(
        self, context: grpc.ServicerContext, annotator_id: str
    ) -> list[str] | None:
        """Projects of `annotator_id` the caller manages (None: an admin sees all); refuses
        with NOT_FOUND when the person is not visible to the caller."""
        caller = self.auth.principal(context.invocation_metadata(), self.clock())
        with self.db.transaction() as conn:
            found = people.person(conn, annotator_id)
        if caller.admin:
            if found is None:
                self.guard.refuse_current(grpc.StatusCode.NOT_FOUND, no_person(annotator_id))
            return None
        managed = {p for p, m in caller.memberships if m.role == "manager"}
        if not managed:
            self.guard.refuse_current(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{_rpc_name()} needs the manager role in a project; "
                f"{caller.annotator_id} manages none",
            )
        shared = sorted(set(found[1]) & managed) if found else []
        if found is None or found[0] or not shared:
            # Someone the caller does not manage is, to them, nobody.
            self.guard.refuse_current(
                grpc.StatusCode.NOT_FOUND,
                no_person(annotator_id),
                reason="not in a managed project",
            )
        return shared

    def _ttl(self, context: grpc.ServicerContext, requested: int) -> int:
        return bounded_ttl(context, requested, DEFAULT_TOKEN_TTL_S, MAX_TOKEN_TTL_S)

    def _member_role(self, context: grpc.ServicerContext, role: int) -> str:
        name = PROJECT_ROLES.get(role)  # type: ignore[call-overload]
        if name is None:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "role must be ROLE_ANNOTATOR, ROLE_REVIEWER or ROLE_MANAGER",
            )
        return name

    # -- persons and tokens ------------------------------------------------------

    def CreateAnnotator(
        self, request: gateway_pb2.CreateAnnotatorRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.CreateAnnotatorResponse:
        caller = current_caller()
        admin = request.role == common_pb2.ROLE_ADMIN
        if admin:
            if not caller.admin:
                self.guard.refuse_current(
                    grpc.StatusCode.PERMISSION_DENIED, "only an admin creates an admin"
                )
            self.guard.checked()
        else:
            if request.role == common_pb2.ROLE_UNSPECIFIED or not request.project:
                self.guard.checked()
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "give a project and a role in it (ROLE_ANNOTATOR, ROLE_REVIEWER or "
                    "ROLE_MANAGER), or ROLE_ADMIN for a global admin",
                )
            self.guard.require(request.project, "manager")
            role = self._member_role(context, request.role)
        if not _ANNOTATOR_ID.match(request.annotator_id):
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "annotator_id must be 1-64 letters, digits or '_.@-', starting with a letter "
                "or digit",
            )
        with self.db.transaction() as conn:
            try:
                people.create_person(conn, request.annotator_id, request.display_name[:200], admin)
            except people.PersonExists:
                abort(
                    context,
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"annotator {request.annotator_id!r} already exists",
                )
            detail: dict[str, Any] = {"admin": admin}
            if not admin:
                people.add_member(conn, request.project, request.annotator_id, role, caller.name)
                detail["role"] = role
            people.audit(
                conn,
                action_entry(
                    "gateway", "create_annotator", request.annotator_id, request.project, **detail
                ),
            )
        return gateway_pb2.CreateAnnotatorResponse(annotator_id=request.annotator_id)

    def IssueToken(
        self, request: gateway_pb2.IssueTokenRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.IssueTokenResponse:
        scope = self._visible_projects(context, request.annotator_id)
        self.guard.checked()
        ttl = self._ttl(context, request.ttl_seconds)
        token = new_token()
        expires_at = self.clock() + timedelta(seconds=ttl)
        with self.db.transaction() as conn:
            people.insert_token(
                conn, request.annotator_id, hash_token(token), expires_at, scope=scope
            )
            # One row per project the token reaches, so each one's managers see it.
            for project in scope or [""]:
                people.audit(
                    conn,
                    action_entry(
                        "gateway",
                        "issue_token",
                        request.annotator_id,
                        project,
                        ttl_seconds=ttl,
                        scope=scope,
                    ),
                )
        response = gateway_pb2.IssueTokenResponse(token=token)
        response.expires_at.FromDatetime(expires_at)
        return response

    def RevokeTokens(
        self, request: gateway_pb2.RevokeTokensRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.RevokeTokensResponse:
        within = self._visible_projects(context, request.annotator_id)
        self.guard.checked()
        with self.db.transaction() as conn:
            revoked = people.revoke_tokens(conn, request.annotator_id, within)
            for project in within or [""]:
                people.audit(
                    conn,
                    action_entry(
                        "gateway",
                        "revoke_tokens",
                        request.annotator_id,
                        project,
                        revoked=revoked,
                        within=within,
                    ),
                )
        self.auth.forget(request.annotator_id)
        return gateway_pb2.RevokeTokensResponse(revoked=revoked)

    def RenewToken(
        self, request: gateway_pb2.RenewTokenRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.RenewTokenResponse:
        principal, old_hash, _ = self.auth.resolve(context.invocation_metadata(), self.clock())
        ttl = self._ttl(context, request.ttl_seconds)
        token = new_token()
        expires_at = self.clock() + timedelta(seconds=ttl)
        with self.db.transaction() as conn:
            scope = people.token_scope(conn, old_hash)
            people.insert_token(
                conn, principal.annotator_id, hash_token(token), expires_at, "renewed", scope
            )
            people.revoke_token(conn, old_hash)
            people.audit(
                conn,
                action_entry("gateway", "renew_token", principal.annotator_id, ttl_seconds=ttl),
            )
        self.auth.forget(principal.annotator_id)
        response = gateway_pb2.RenewTokenResponse(token=token)
        response.expires_at.FromDatetime(expires_at)
        return response

    def WhoAmI(
        self, request: gateway_pb2.WhoAmIRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.WhoAmIResponse:
        principal, _, expires_at = self.auth.resolve(context.invocation_metadata(), self.clock())
        reply = gateway_pb2.WhoAmIResponse(
            annotator_id=principal.annotator_id, admin=principal.admin
        )
        reply.token_expires_at.FromDatetime(expires_at)
        member = None
        if request.project and request.project in principal.projects:
            member = principal.membership(request.project)
        if principal.admin:
            reply.role = common_pb2.ROLE_ADMIN
        if member is not None:
            reply.member = True
            reply.role = ROLE_ENUM[member.role]
            reply.status = STATUS_ENUM[member.status]  # type: ignore[assignment]
            reply.status_reason = member.status_reason
        return reply

    # -- memberships -------------------------------------------------------------

    def AddMember(
        self, request: gateway_pb2.AddMemberRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.AddMemberResponse:
        caller = current_caller()
        role = self._member_role(context, request.role)
        with self.db.transaction() as conn:
            if people.person(conn, request.annotator_id) is None:
                abort(context, grpc.StatusCode.NOT_FOUND, no_person(request.annotator_id))
            created = people.add_member(
                conn, request.project, request.annotator_id, role, caller.name
            )
            people.audit(
                conn,
                action_entry(
                    "gateway", "add_member", request.annotator_id, role=role, created=created
                ),
            )
        self.auth.forget(request.annotator_id)
        return gateway_pb2.AddMemberResponse(created=created)

    def RemoveMember(
        self, request: gateway_pb2.RemoveMemberRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.RemoveMemberResponse:
        with self.db.transaction() as conn:
            if not people.remove_member(conn, request.project, request.annotator_id):
                abort(
                    context,
                    grpc.StatusCode.NOT_FOUND,
                    f"{request.annotator_id!r} is not a member of {request.project!r}",
                )
            released = store.release_leases(conn, request.annotator_id, request.project)
            people.audit(
                conn,
                action_entry("gateway", "remove_member", request.annotator_id, released=released),
            )
        self.auth.forget(request.annotator_id)
        return gateway_pb2.RemoveMemberResponse(released_tasks=released)

    def SetAnnotatorStatus(
        self, request: gateway_pb2.SetAnnotatorStatusRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SetAnnotatorStatusResponse:
        status = STATUSES.get(request.status)
        if status is None:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "status is required: ANNOTATOR_STATUS_ACTIVE, _RETRAIN or _BLOCKED",
            )
        reason = request.reason[:500]
        with self.db.transaction() as conn:
            if not people.set_status(conn, request.project, request.annotator_id, status, reason):
                abort(
                    context,
                    grpc.StatusCode.NOT_FOUND,
                    f"{request.annotator_id!r} is not a member of {request.project!r}",
                )
            if status != "active":
                store.release_leases(conn, request.annotator_id, request.project)
            people.audit(
                conn,
                action_entry(
                    "gateway", "set_status", request.annotator_id, status=status, reason=reason
                ),
            )
            # Quality learns a person's decision too: its verdicts never lift a block, so
            # it must know when someone did (and that it may block again).
            store.publish_status(
                conn,
                request.project,
                request.annotator_id,
                request.status,
                reason,
                current_caller().name,
            )
        self.auth.forget(request.annotator_id)
        return gateway_pb2.SetAnnotatorStatusResponse()

    def ListAnnotators(
        self, request: gateway_pb2.ListAnnotatorsRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.ListAnnotatorsResponse:
        with self.db.transaction() as conn:
            if request.project:
                rows = people.list_members(conn, request.project)
            else:
                rows = people.list_people(conn)
        return gateway_pb2.ListAnnotatorsResponse(
            annotators=[
                gateway_pb2.AnnotatorInfo(
                    annotator_id=r.annotator_id,
                    display_name=r.display_name,
                    role=ROLE_ENUM[r.role or ("admin" if r.admin else "annotator")],
                    status=STATUS_ENUM[r.status],  # type: ignore[arg-type]
                    labels_submitted=r.labels_submitted,
                    status_reason=r.status_reason,
                    admin=r.admin,
                    projects=list(r.projects),
                )
                for r in rows
            ]
        )

    def ListProjects(
        self, request: gateway_pb2.ListProjectsRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.ListProjectsResponse:
        principal = self.auth.principal(context.invocation_metadata(), self.clock())
        names = set(principal.projects)
        if principal.admin:
            with self.db.transaction() as conn:
                names |= set(store.projects(conn))
        out = []
        for name in sorted(names):
            member = principal.membership(name)
            contract = self.contracts.current(name)
            info = gateway_pb2.ProjectInfo(
                project=name, contract_version=contract.version if contract else ""
            )
            if name in principal.projects and member is not None:
                info.role = ROLE_ENUM[member.role]
                info.status = STATUS_ENUM[member.status]  # type: ignore[assignment]
            else:
                info.role = common_pb2.ROLE_ADMIN
            out.append(info)
        return gateway_pb2.ListProjectsResponse(projects=out)

    # -- the audit log -------------------------------------------------------------

    def ListAudit(
        self, request: gateway_pb2.ListAuditRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.ListAuditResponse:
        limit = request.limit or 100
        if not 1 <= limit <= MAX_AUDIT_ROWS:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 1..{MAX_AUDIT_ROWS}")
        if request.outcome not in ("", "done", "refused"):
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "outcome must be done or refused")
        found = people.AuditFilter(
            projects=[request.project] if request.project else None,
            actor=request.actor,
            action=request.action,
            outcome=request.outcome,
            service=request.service,
            since=request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None,
            until=request.until.ToDatetime(tzinfo=UTC) if request.HasField("until") else None,
            before_id=request.before_id,
            limit=limit,
        )
        with self.db.transaction() as conn:
            rows = people.list_audit(conn, found)
        entries = []
        for r in rows:
            entry = gateway_pb2.AuditEntry(
                id=r[0],
                service=r[2],
                actor=r[3],
                actor_kind=r[4],
                source=r[5],
                rpc=r[6],
                project=r[7],
                action=r[8],
                target=r[9],
                outcome=r[10],
                code=r[11],
                reason=r[12],
                detail_json=json.dumps(r[13], sort_keys=True),
            )
            entry.at.FromDatetime(r[1])
            entries.append(entry)
        return gateway_pb2.ListAuditResponse(entries=entries)
