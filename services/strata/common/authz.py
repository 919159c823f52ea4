"""The guard every gRPC server runs before a method: who is calling, may they, and the audit.

A caller is a service (its mTLS certificate, or a signed assertion when the stack is
configured for plaintext) or a person (a bearer token, resolved by a `Directory`:
locally in the gateway, through the gateway's WhoAmI elsewhere). `GuardInterceptor`
applies `strata.common.matrix` to every call; a rule whose project is derived (a
task's, an item's, a run's) is finished by the method through `Guard.require`, and a
method that forgets is answered INTERNAL rather than let through. Every refusal is
audited; failed sign-ins are rate-limited per source.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, Protocol

import grpc

from strata.common.audit import REFUSED, AuditEntry, AuditSink
from strata.common.identity import SERVICE_HEADER, FailureLimiter, ServiceKeys
from strata.common.matrix import (
    ADMIN,
    ANY_PERSON,
    DERIVED,
    FROM_REQUEST,
    FROM_STREAM,
    RANK,
    Rule,
    is_open,
    rule_for,
)
from strata.common.tls import NO_PEER, Peer
from strata.common.tokens import AuthError

log = logging.getLogger(__name__)

Metadata = Sequence[tuple[str, str | bytes]]

FORWARDED_FOR = "x-forwarded-for"


@dataclass(frozen=True)
class Standing:
    """A person as seen for one project."""

    annotator_id: str
    admin: bool = False
    role: str = ""  # annotator | reviewer | manager; "" when not a member
    status: str = "active"
    status_reason: str = ""


class DirectoryUnavailable(Exception):
    """The people directory cannot answer now (UNAVAILABLE: retry)."""


class Directory(Protocol):
    def standing(self, metadata: Metadata, project: str) -> Standing:
        """The caller of a token, and their standing in `project` ("" for none).
        Raises AuthError for a missing or bad token, DirectoryUnavailable."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, and their standing in the project checked for this call."""

    kind: str  # person | service
    name: str
    admin: bool = False
    source: str = ""
    project: str = ""
    role: str = ""
    status: str = "active"
    status_reason: str = ""

    def at_least(self, role: str) -> bool:
        """An admin, or a member with `role` or a higher one in `project`."""
        return self.admin or RANK.get(self.role, 0) >= RANK[role]

    @property
    def person(self) -> bool:
        return self.kind == "person"


class Refused(Exception):
    """A call refused with a status code and a message a person can act on."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- the guard -----------------------------------------------------------------------------


@dataclass
class _Admission:
    rule: Rule
    caller: Caller
    metadata: Metadata
    rpc: str
    checked: bool = False


_CURRENT: contextvars.ContextVar[_Admission] = contextvars.ContextVar("strata_admission")


def current_caller() -> Caller:
    """The caller of the RPC this thread is serving (set by GuardInterceptor)."""
    return _CURRENT.get().caller


def current_rpc() -> str:
    """The full name of the RPC this thread is serving."""
    return _CURRENT.get().rpc


def action_entry(
    service: str, action: str, target: str = "", project: str = "", **detail: Any
) -> AuditEntry:
    """An audit record of an action the current caller is doing through the current RPC."""
    admission = _CURRENT.get()
    caller = admission.caller
    return AuditEntry(
        service=service,
        action=action,
        actor=caller.name,
        actor_kind=caller.kind,
        source=caller.source,
        rpc=admission.rpc,
        project=project or caller.project,
        target=target,
        detail=detail,
    )


def _source_of(context: grpc.ServicerContext) -> str:
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer or "unknown"


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


@dataclass
class Guard:
    """Authenticates and authorizes calls to one service; audits every refusal."""

    service: str
    directory: Directory
    audit: AuditSink
    limiter: FailureLimiter
    peer_of: Callable[[grpc.ServicerContext], Peer] = lambda context: NO_PEER
    service_keys: ServiceKeys | None = None  # plaintext stacks only
    # Peers whose x-forwarded-for names the real source (the web service, the Ingress).
    forwarders: frozenset[Peer] = field(
        default_factory=lambda: frozenset({Peer("service", "web"), Peer("client", "ingress")})
    )

    # -- identity ---------------------------------------------------------------

    def _service(self, context: grpc.ServicerContext, metadata: Metadata) -> str | None:
        peer = self.peer_of(context)
        if peer.kind == "service":
            return peer.name
        if self.service_keys is not None:
            for key, value in metadata:
                if key.lower() == SERVICE_HEADER:
                    return self.service_keys.verify(_text(value))
        return None

    def _forwarder(self, context: grpc.ServicerContext, metadata: Metadata) -> bool:
        """The call comes from a trusted forwarder of people's calls (the web service,
        the Ingress): by its certificate, or its signed name on a plaintext stack."""
        if self.peer_of(context) in self.forwarders:
            return True
        service = self._service(context, metadata)
        return service is not None and Peer("service", service) in self.forwarders

    def source(self, context: grpc.ServicerContext, metadata: Metadata) -> str:
        """Where the call came from: the peer's address, or the address a trusted
        forwarder (the web service, the Ingress) passes on."""
        if self._forwarder(context, metadata):
            for key, value in metadata:
                if key.lower() == FORWARDED_FOR:
                    first = _text(value).split(",")[0].strip()
                    if first:
                        return first[:64]
        return _source_of(context)

    def identify(self, rpc: str, context: grpc.ServicerContext, project: str) -> Caller:
        """Who is calling (a service, or a person with their standing in `project`)."""
        metadata = context.invocation_metadata() or ()
        source = self.source(context, metadata)
        has_token = any(k.lower() == "authorization" for k, _ in metadata)
        service = self._service(context, metadata)
        if not has_token:
            if service:
                return Caller("service", service, source=source)
            self._refuse_unauthenticated(
                rpc, source, "no bearer token: send metadata 'authorization: Bearer <token>'"
            )
        # A service passing on its caller's token is not where a bad token came from; a
        # forwarder of people's calls names the source, and that source is counted.
        counted = service is None or self._forwarder(context, metadata)
        if counted and self.limiter.throttled(source):
            suppressed = self.limiter.audit_due(source)
            if suppressed is not None:
                self._audit_refusal(
                    rpc,
                    Caller("person", "", source=source),
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "too many failed sign-ins",
                    project,
                    {"refused_since_last_record": suppressed},
                    actor_kind="anonymous",
                )
            raise Refused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many failed sign-ins from {source}; wait a minute and try again",
            )
        try:
            standing = self.directory.standing(metadata, project)
        except AuthError as exc:
            if counted:
                self.limiter.failed(source)
            self._refuse_unauthenticated(rpc, source, str(exc), quiet=not counted)
        except DirectoryUnavailable as exc:
            raise Refused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        return Caller(
            "person",
            standing.annotator_id,
            standing.admin,
            source,
            project,
            standing.role,
            standing.status,
            standing.status_reason,
        )

    # -- decisions --------------------------------------------------------------

    def admit(
        self, rpc: str, rule: Rule, context: grpc.ServicerContext, project: str | None
    ) -> Caller:
        """The caller, if `rule` lets them call `rpc` (about `project`, when the request
        names it); raises Refused."""
        wanted = project if rule.project in (FROM_REQUEST, FROM_STREAM) else ""
        caller = self.identify(rpc, context, wanted or "")
        if caller.kind == "service":
            if caller.name not in rule.services:
                self.refuse(
                    rpc,
                    caller,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{_short(rpc)} is not open to the {caller.name} service",
                )
            return caller
        if rule.people is None:
            only = ", ".join(rule.services) or "no"
            self.refuse(
                rpc,
                caller,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{_short(rpc)} is for the {only} service only, not for people",
            )
        if rule.people == ANY_PERSON:
            return caller
        if rule.people == ADMIN:
            if not caller.admin:
                self.refuse(
                    rpc,
                    caller,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{_short(rpc)} needs the admin role; {caller.name} is not an admin",
                )
            return caller
        if rule.project == DERIVED:
            return caller
        if not wanted:
            if rule.admin_without_project and caller.admin:
                return caller
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        return self.check(rpc, rule, caller, wanted, rule.people)

    def check(
        self,
        rpc: str,
        rule: Rule,
        caller: Caller,
        project: str,
        role: str,
        not_found: str = "",
    ) -> Caller:
        """`caller` (standing in `project`) may act in it with `role`; else Refused:
        NOT_FOUND for a non-member, as if the project did not exist."""
        if not caller.admin and not caller.role:
            self.refuse(
                rpc,
                caller,
                grpc.StatusCode.NOT_FOUND,
                not_found or f"no project {project!r}",
                project,
                reason="not a member of the project",
            )
        if not caller.at_least(role):
            self.refuse(
                rpc,
                caller,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{_short(rpc)} needs the {role} role in project {project}; "
                f"{caller.name} is {caller.role}",
                project,
            )
        if caller.status == "blocked" and not rule.blocked_may_call and not caller.admin:
            why = f" ({caller.status_reason})" if caller.status_reason else ""
            self.refuse(
                rpc,
                caller,
                grpc.StatusCode.PERMISSION_DENIED,
                f"annotator {caller.name} is blocked in project {project}{why}; "
                "ask a project manager",
                project,
            )
        return caller

    def require(self, project: str, role: str | None = None, not_found: str = "") -> Caller:
        """Finish a derived rule inside a method: the current caller may act in `project`
        (with the rule's role, or `role`); returns them with their standing there."""
        admission = _CURRENT.get()
        caller = admission.caller
        if caller.kind == "service":
            admission.checked = True
            return caller
        if caller.project != project:
            standing = self._restand(admission, project)
            caller = replace(
                caller,
                project=project,
                role=standing.role,
                status=standing.status,
                status_reason=standing.status_reason,
            )
        needed = role or admission.rule.people or "manager"
        checked = self.check(admission.rpc, admission.rule, caller, project, needed, not_found)
        admission.caller = checked
        admission.checked = True
        return checked

    def _restand(self, admission: _Admission, project: str) -> Standing:
        try:
            return self.directory.standing(admission.metadata, project)
        except AuthError as exc:
            self._refuse_unauthenticated(admission.rpc, admission.caller.source, str(exc))
        except DirectoryUnavailable as exc:
            raise Refused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None

    def checked(self) -> Caller:
        """Mark a derived rule as decided by the method itself; returns the caller."""
        admission = _CURRENT.get()
        admission.checked = True
        return admission.caller

    # -- refusals ---------------------------------------------------------------

    def refuse(
        self,
        rpc: str,
        caller: Caller,
        code: grpc.StatusCode,
        message: str,
        project: str = "",
        *,
        reason: str = "",
        detail: dict[str, Any] | None = None,
    ) -> NoReturn:
        """Audit a refusal and raise it."""
        self._audit_refusal(rpc, caller, code, reason or message, project, detail or {})
        raise Refused(code, message)

    def refuse_current(
        self, code: grpc.StatusCode, message: str, project: str = "", *, reason: str = ""
    ) -> NoReturn:
        """Refuse the call being served (a method's own authorization decision)."""
        admission = _CURRENT.get()
        admission.checked = True
        self.refuse(admission.rpc, admission.caller, code, message, project, reason=reason)

    def _refuse_unauthenticated(
        self, rpc: str, source: str, message: str, *, quiet: bool = False
    ) -> NoReturn:
        if not quiet:
            self._audit_refusal(
                rpc,
                Caller("person", "", source=source),
                grpc.StatusCode.UNAUTHENTICATED,
                message,
                "",
                {},
                actor_kind="anonymous",
            )
        raise Refused(grpc.StatusCode.UNAUTHENTICATED, message)

    def _audit_refusal(
        self,
        rpc: str,
        caller: Caller,
        code: grpc.StatusCode,
        reason: str,
        project: str,
        detail: dict[str, Any],
        *,
        actor_kind: str = "",
    ) -> None:
        self.audit.record(
            AuditEntry(
                service=self.service,
                action="refused",
                outcome=REFUSED,
                actor=caller.name,
                actor_kind=actor_kind or caller.kind,
                source=caller.source,
                rpc=rpc,
                project=project or caller.project,
                code=code.name,
                reason=reason,
                detail=detail,
            )
        )


def _short(rpc: str) -> str:
    return rpc.rsplit("/", 1)[-1]


def _request_project(request: Any) -> str | None:
    value = getattr(request, "project", None)
    return value if isinstance(value, str) else None


class GuardInterceptor(grpc.ServerInterceptor):
    """Applies the matrix to every call before its method runs."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        rpc = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or is_open(rpc):
            return handler
        rule = rule_for(rpc)
        if rule is None:
            return _refusing(handler, grpc.StatusCode.PERMISSION_DENIED, f"{rpc} has no rule")
        return _guarded(handler, self.guard, rpc, rule)


def _abort(context: grpc.ServicerContext, refused: Refused) -> NoReturn:
    context.abort(refused.code, str(refused))
    raise AssertionError("unreachable")


def _refusing(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    return _rebuilt(handler, deny)


def _rebuilt(handler: grpc.RpcMethodHandler, behavior: Callable[..., Any]) -> Any:
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _guarded(handler: grpc.RpcMethodHandler, guard: Guard, rpc: str, rule: Rule) -> Any:
    inner = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )

    def admit(context: grpc.ServicerContext, project: str | None) -> _Admission:
        try:
            caller = guard.admit(rpc, rule, context, project)
        except Refused as refused:
            _abort(context, refused)
        return _Admission(rule, caller, context.invocation_metadata() or (), rpc)

    def finish(admission: _Admission, context: grpc.ServicerContext) -> None:
        if rule.project == DERIVED and not admission.checked:
            log.error("%s returned without deciding its caller's project access", rpc)
            context.abort(grpc.StatusCode.INTERNAL, f"{rpc} did not check access")

    def run(admission: _Admission, call: Callable[[], Any], context: grpc.ServicerContext) -> Any:
        token = _CURRENT.set(admission)
        try:
            result = call()
        except Refused as refused:
            _abort(context, refused)
        finally:
            _CURRENT.reset(token)
        finish(admission, context)
        return result

    if handler.request_streaming:

        def streaming(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            first = next(requests, None)
            admission = admit(context, _request_project(first) if first is not None else "")
            rest = _chain(first, requests)
            if handler.response_streaming:
                return _stream_out(admission, lambda: inner(rest, context), context, finish)
            return run(admission, lambda: inner(rest, context), context)

        return _rebuilt(handler, streaming)

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        admission = admit(context, _request_project(request))
        if handler.response_streaming:
            return _stream_out(admission, lambda: inner(request, context), context, finish)
        return run(admission, lambda: inner(request, context), context)

    return _rebuilt(handler, unary)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
    yield from rest


_END = object()


def _stream_out(
    admission: _Admission,
    call: Callable[[], Iterator[Any]],
    context: grpc.ServicerContext,
    finish: Callable[[_Admission, grpc.ServicerContext], None],
) -> Iterator[Any]:
    # The method's generator runs a step at a time; each step sees the admission.
    def step(fn: Callable[[], Any]) -> Any:
        token = _CURRENT.set(admission)
        try:
            return fn()
        finally:
            _CURRENT.reset(token)

    try:
        iterator = step(call)
        item = step(lambda: next(iterator, _END))
        finish(admission, context)
        while item is not _END:
            yield item
            item = step(lambda: next(iterator, _END))
    except Refused as refused:
        _abort(context, refused)
