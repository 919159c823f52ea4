"""Onboarding without gRPC code: `strata members`, `strata tokens`, `strata projects`,
`strata audit`.

Each command calls the gateway as the person whose token is in STRATA_TOKEN (on the
embedded stack: its bootstrap admin); the gateway decides what they may do.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from strata.cli.connect import fail, target
from strata.cli.stack import StackConfig
from strata.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ROLES = {
    "annotator": common_pb2.ROLE_ANNOTATOR,
    "reviewer": common_pb2.ROLE_REVIEWER,
    "manager": common_pb2.ROLE_MANAGER,
}
ROLE_NAMES = {v: k for k, v in ROLES.items()} | {common_pb2.ROLE_ADMIN: "admin"}
STATUSES = {
    "active": common_pb2.ANNOTATOR_STATUS_ACTIVE,
    "retrain": common_pb2.ANNOTATOR_STATUS_RETRAIN,
    "blocked": common_pb2.ANNOTATOR_STATUS_BLOCKED,
}
STATUS_NAMES = {v: k for k, v in STATUSES.items()}
_AGO = re.compile(r"^(\d+)([smhd])$")


class _Refused(Exception):
    """A call the gateway refused (already printed)."""


def _ask(
    args: argparse.Namespace,
    config: StackConfig,
    command: str,
    method: str,
    request: Any,
    quiet: tuple[grpc.StatusCode, ...] = (),
) -> Any:
    """One gateway RPC as the CLI's caller; a refusal is printed (unless its code is in
    `quiet`, then re-raised as is) and raised as _Refused."""
    gw = target(config, "gateway", args.gateway or "", "a project manager's or admin's")
    with gw.channel() as channel:
        stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
        try:
            return getattr(stub, method)(request, metadata=gw.metadata)
        except grpc.RpcError as exc:
            if exc.code() in quiet:
                raise
            fail(command, exc)
            raise _Refused from None


def refused_is_1(command: Callable[[argparse.Namespace, StackConfig], int]) -> Any:
    """Exit status 1 when the gateway refused the command's call."""

    def run(args: argparse.Namespace, config: StackConfig) -> int:
        try:
            return command(args, config)
        except _Refused:
            return 1

    run.__doc__ = command.__doc__
    return run


@refused_is_1
def cmd_members_add(args: argparse.Namespace, config: StackConfig) -> int:
    """Make PERSON a member of a project (creating the person if they are new)."""
    role = ROLES[args.role]
    try:
        _ask(
            args,
            config,
            "members add",
            "CreateAnnotator",
            gateway_pb2.CreateAnnotatorRequest(
                annotator_id=args.person,
                display_name=args.name or "",
                role=role,  # type: ignore[arg-type]
                project=args.project,
            ),
            quiet=(grpc.StatusCode.ALREADY_EXISTS,),
        )
        print(f"{args.person} created, {args.role} of {args.project}")
        return 0
    except grpc.RpcError:
        pass  # they exist: make them a member
    reply = _ask(
        args,
        config,
        "members add",
        "AddMember",
        gateway_pb2.AddMemberRequest(
            project=args.project,
            annotator_id=args.person,
            role=role,  # type: ignore[arg-type]
        ),
    )
    what = "added as" if reply.created else "now"
    print(f"{args.person} {what} {args.role} of {args.project}")
    return 0


@refused_is_1
def cmd_members_remove(args: argparse.Namespace, config: StackConfig) -> int:
    reply = _ask(
        args,
        config,
        "members remove",
        "RemoveMember",
        gateway_pb2.RemoveMemberRequest(project=args.project, annotator_id=args.person),
    )
    print(
        f"{args.person} removed from {args.project}; "
        f"{reply.released_tasks} leased task(s) returned to the queue"
    )
    return 0


@refused_is_1
def cmd_members_list(args: argparse.Namespace, config: StackConfig) -> int:
    reply = _ask(
        args,
        config,
        "members list",
        "ListAnnotators",
        gateway_pb2.ListAnnotatorsRequest(project=args.project),
    )
    print(f"{'person':<28}{'role':<11}{'status':<9}{'labels':>8}  reason")
    for a in reply.annotators:
        role = ROLE_NAMES.get(a.role, "")
        status = STATUS_NAMES.get(a.status, "")
        print(
            f"{a.annotator_id:<28}{role:<11}{status:<9}{a.labels_submitted:>8}  {a.status_reason}"
        )
    return 0


@refused_is_1
def cmd_members_status(args: argparse.Namespace, config: StackConfig) -> int:
    _ask(
        args,
        config,
        "members status",
        "SetAnnotatorStatus",
        gateway_pb2.SetAnnotatorStatusRequest(
            annotator_id=args.person,
            project=args.project,
            status=STATUSES[args.status],  # type: ignore[arg-type]
            reason=args.reason or "",
        ),
    )
    print(f"{args.person} is {args.status} in {args.project}")
    return 0


@refused_is_1
def cmd_admin_create(args: argparse.Namespace, config: StackConfig) -> int:
    _ask(
        args,
        config,
        "admins create",
        "CreateAnnotator",
        gateway_pb2.CreateAnnotatorRequest(
            annotator_id=args.person, display_name=args.name or "", role=common_pb2.ROLE_ADMIN
        ),
    )
    print(f"{args.person} created: a global admin")
    return 0


def _print_token(token: str, expires: datetime) -> None:
    # The token goes to standard output alone, so it can be piped; the rest to stderr.
    print(token)
    print(f"expires {expires.isoformat(timespec='seconds')}; shown once", file=sys.stderr)


@refused_is_1
def cmd_tokens_issue(args: argparse.Namespace, config: StackConfig) -> int:
    reply = _ask(
        args,
        config,
        "tokens issue",
        "IssueToken",
        gateway_pb2.IssueTokenRequest(
            annotator_id=args.person, ttl_seconds=int(args.ttl_days * 86_400)
        ),
    )
    _print_token(reply.token, reply.expires_at.ToDatetime(tzinfo=UTC))
    return 0


@refused_is_1
def cmd_tokens_revoke(args: argparse.Namespace, config: StackConfig) -> int:
    reply = _ask(
        args,
        config,
        "tokens revoke",
        "RevokeTokens",
        gateway_pb2.RevokeTokensRequest(annotator_id=args.person),
    )
    print(f"{reply.revoked} token(s) of {args.person} revoked")
    return 0


def _web_url(args: argparse.Namespace, config: StackConfig) -> str | None:
    if args.web:
        return str(args.web).rstrip("/")
    state = config.home / "stack.json"
    if state.exists():
        web = json.loads(state.read_text()).get("web")
        return str(web) if web else None
    return None


@refused_is_1
def cmd_tokens_link(args: argparse.Namespace, config: StackConfig) -> int:
    web = _web_url(args, config)
    if web is None:
        print(
            "tokens link: no running stack's web to link to; pass --web https://<your Strata>",
            file=sys.stderr,
        )
        return 2
    reply = _ask(
        args,
        config,
        "tokens link",
        "CreateSignInLink",
        gateway_pb2.CreateSignInLinkRequest(
            project=args.project, annotator_id=args.person, ttl_seconds=int(args.minutes * 60)
        ),
    )
    # The code rides in the fragment: browsers never send it to a server or a log.
    print(f"{web}/signin#code={reply.code}")
    expires = reply.expires_at.ToDatetime(tzinfo=UTC)
    print(
        f"works once, for project {args.project}, until {expires.isoformat(timespec='seconds')}",
        file=sys.stderr,
    )
    return 0


@refused_is_1
def cmd_tokens_renew(args: argparse.Namespace, config: StackConfig) -> int:
    reply = _ask(
        args,
        config,
        "tokens renew",
        "RenewToken",
        gateway_pb2.RenewTokenRequest(ttl_seconds=int(args.ttl_days * 86_400)),
    )
    _print_token(reply.token, reply.expires_at.ToDatetime(tzinfo=UTC))
    print("the token you renewed is revoked: set STRATA_TOKEN to the new one", file=sys.stderr)
    return 0


@refused_is_1
def cmd_projects(args: argparse.Namespace, config: StackConfig) -> int:
    who = _ask(args, config, "projects", "WhoAmI", gateway_pb2.WhoAmIRequest())
    reply = _ask(args, config, "projects", "ListProjects", gateway_pb2.ListProjectsRequest())
    expires = who.token_expires_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
    admin = ", admin" if who.admin else ""
    print(f"signed in as {who.annotator_id}{admin}; token expires {expires}")
    for p in reply.projects:
        status = STATUS_NAMES.get(p.status, "")
        print(f"  {p.project:<28}{ROLE_NAMES.get(p.role, ''):<11}{status:<9}{p.contract_version}")
    return 0


def parse_since(raw: str, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d` ago, or an ISO 8601 time."""
    now = now or datetime.now(UTC)
    found = _AGO.match(raw.strip())
    if found:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found[2]]
        return now - timedelta(**{unit: int(found[1])})
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is neither a duration (30m, 2h, 7d) nor an ISO time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@refused_is_1
def cmd_audit(args: argparse.Namespace, config: StackConfig) -> int:
    """The audit log, newest first, filtered."""
    request = gateway_pb2.ListAuditRequest(
        project=args.project or "",
        actor=args.actor or "",
        action=args.action or "",
        outcome=args.outcome or "",
        service=args.service or "",
        limit=args.limit,
    )
    if args.since:
        request.since.FromDatetime(args.since)
    reply = _ask(args, config, "audit", "ListAudit", request)
    if args.json:
        for e in reply.entries:
            print(json.dumps(_entry(e), sort_keys=True))
        return 0
    for e in reply.entries:
        at = e.at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
        who = e.actor or f"({e.actor_kind or 'anonymous'})"
        what = f"{e.outcome} {e.code}".strip() if e.outcome == "refused" else e.action
        rpc = e.rpc.rsplit("/", 1)[-1] or "-"
        print(
            f"{at} {e.service:<10}{who:<22}{rpc:<20}{e.project or '-':<16}{what:<28}"
            f"{e.target} {e.reason}".rstrip()
        )
    return 0


def _entry(e: gateway_pb2.AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.ToDatetime(tzinfo=UTC).isoformat(),
        "service": e.service,
        "actor": e.actor,
        "actor_kind": e.actor_kind,
        "source": e.source,
        "rpc": e.rpc,
        "project": e.project,
        "action": e.action,
        "target": e.target,
        "outcome": e.outcome,
        "code": e.code,
        "reason": e.reason,
        "detail": json.loads(e.detail_json or "{}"),
    }


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def with_gateway(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--gateway", help="gateway host:port (default: the running stack's)")
        return p

    members = sub.add_parser("members", help="a project's members: add, remove, list, status")
    verbs = members.add_subparsers(dest="verb", required=True)
    add = with_gateway(verbs.add_parser("add", help="make a person a member (created if new)"))
    add.add_argument("person")
    add.add_argument("--project", required=True)
    add.add_argument("--role", choices=sorted(ROLES), default="annotator")
    add.add_argument("--name", help="display name of a new person")
    add.set_defaults(func=cmd_members_add)
    remove = with_gateway(verbs.add_parser("remove", help="end a person's membership"))
    remove.add_argument("person")
    remove.add_argument("--project", required=True)
    remove.set_defaults(func=cmd_members_remove)
    listing = with_gateway(verbs.add_parser("list", help="a project's members"))
    listing.add_argument("--project", default="", help="empty: everyone (admins only)")
    listing.set_defaults(func=cmd_members_list)
    status = with_gateway(verbs.add_parser("status", help="set a member's status"))
    status.add_argument("person")
    status.add_argument("status", choices=sorted(STATUSES))
    status.add_argument("--project", required=True)
    status.add_argument("--reason", default="")
    status.set_defaults(func=cmd_members_status)

    admins = sub.add_parser("admins", help="global admins")
    admin_verbs = admins.add_subparsers(dest="verb", required=True)
    create = with_gateway(admin_verbs.add_parser("create", help="create a global admin"))
    create.add_argument("person")
    create.add_argument("--name", default="")
    create.set_defaults(func=cmd_admin_create)

    tokens = sub.add_parser("tokens", help="bearer tokens: issue, revoke, renew, link")
    token_verbs = tokens.add_subparsers(dest="verb", required=True)
    issue = with_gateway(token_verbs.add_parser("issue", help="issue a token (shown once)"))
    issue.add_argument("person")
    issue.add_argument("--ttl-days", type=float, default=30.0)
    issue.set_defaults(func=cmd_tokens_issue)
    revoke = with_gateway(token_verbs.add_parser("revoke", help="revoke a person's tokens"))
    revoke.add_argument("person")
    revoke.set_defaults(func=cmd_tokens_revoke)
    renew = with_gateway(
        token_verbs.add_parser("renew", help="trade your token (STRATA_TOKEN) for a new one")
    )
    renew.add_argument("--ttl-days", type=float, default=30.0)
    renew.set_defaults(func=cmd_tokens_renew)
    link = with_gateway(
        token_verbs.add_parser(
            "link", help="a one-time browser sign-in link for a member of a project"
        )
    )
    link.add_argument("person")
    link.add_argument("--project", required=True)
    link.add_argument("--minutes", type=float, default=15.0)
    link.add_argument("--web", help="the web's base URL (default: the running stack's)")
    link.set_defaults(func=cmd_tokens_link)

    projects = with_gateway(sub.add_parser("projects", help="who you are and your projects"))
    projects.set_defaults(func=cmd_projects)

    audit = with_gateway(sub.add_parser("audit", help="the audit log, newest first"))
    audit.add_argument("--project", help="a project you manage (admins: any, or all)")
    audit.add_argument("--actor")
    audit.add_argument("--action", help="e.g. refused, load_contract, resolve_review")
    audit.add_argument("--outcome", choices=["done", "refused"])
    audit.add_argument("--service", help="sampler, inference, gateway, quality, training")
    audit.add_argument("--since", type=parse_since, help="30m, 2h, 7d, or an ISO time")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true", help="one JSON object a line")
    audit.set_defaults(func=cmd_audit)
