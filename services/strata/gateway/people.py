"""The gateway's SQL for people: persons, tokens, project memberships and the audit table.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from strata.common.audit import AuditEntry, insert_entry
from strata.gateway.policy import Membership, Principal

Conn = psycopg.Connection[Any]


class PersonExists(Exception):
    """CreateAnnotator for an id that is taken."""


# -- persons and tokens --------------------------------------------------------------


def create_person(conn: Conn, annotator_id: str, display_name: str, admin: bool) -> None:
    cur = conn.execute(
        "INSERT INTO annotators (annotator_id, display_name, role) VALUES (%s, %s, %s) "
        "ON CONFLICT (annotator_id) DO NOTHING",
        (annotator_id, display_name, "admin" if admin else "person"),
    )
    if cur.rowcount == 0:
        raise PersonExists(annotator_id)


def ensure_bootstrap_admin(
    conn: Conn, annotator_id: str, token_hash: str, expires_at: datetime
) -> tuple[bool, int]:
    """The bootstrap admin and its token exist; every other bootstrap token is revoked,
    so rotating STRATA_GATEWAY_ADMIN_TOKEN retires the old one. Returns (token added,
    tokens revoked)."""
    conn.execute(
        "INSERT INTO annotators (annotator_id, display_name, role) VALUES (%s, 'bootstrap admin', "
        "'admin') ON CONFLICT (annotator_id) DO NOTHING",
        (annotator_id,),
    )
    added = conn.execute(
        "INSERT INTO tokens (token_hash, annotator_id, expires_at, kind) "
        "VALUES (%s, %s, %s, 'bootstrap') ON CONFLICT (token_hash) DO NOTHING",
        (token_hash, annotator_id, expires_at),
    ).rowcount
    revoked = conn.execute(
        "UPDATE tokens SET revoked_at = now() WHERE kind = 'bootstrap' AND token_hash <> %s "
        "AND revoked_at IS NULL",
        (token_hash,),
    ).rowcount
    return bool(added), revoked


def person(conn: Conn, annotator_id: str) -> tuple[bool, dict[str, str]] | None:
    """(admin, {project: role}) of a person, or None."""
    row = conn.execute(
        "SELECT role FROM annotators WHERE annotator_id = %s", (annotator_id,)
    ).fetchone()
    if row is None:
        return None
    roles = dict(
        conn.execute(
            "SELECT project, role FROM memberships WHERE annotator_id = %s", (annotator_id,)
        ).fetchall()
    )
    return row[0] == "admin", roles


def insert_token(
    conn: Conn,
    annotator_id: str,
    token_hash: str,
    expires_at: datetime,
    kind: str = "issued",
    scope: Sequence[str] | None = None,
) -> None:
    """Store a token's hash; `scope` limits it to those projects (None: unscoped)."""
    conn.execute(
        "INSERT INTO tokens (token_hash, annotator_id, expires_at, kind, scope) "
        "VALUES (%s, %s, %s, %s, %s)",
        (token_hash, annotator_id, expires_at, kind, list(scope) if scope is not None else None),
    )


def token_scope(conn: Conn, token_hash: str) -> list[str] | None:
    row = conn.execute("SELECT scope FROM tokens WHERE token_hash = %s", (token_hash,)).fetchone()
    return list(row[0]) if row and row[0] is not None else None


def revoke_tokens(conn: Conn, annotator_id: str, within: Sequence[str] | None = None) -> int:
    """Revoke a person's tokens: all of them, or (`within`) those scoped inside those
    projects only."""
    if within is None:
        cur = conn.execute(
            "UPDATE tokens SET revoked_at = now() WHERE annotator_id = %s AND revoked_at IS NULL",
            (annotator_id,),
        )
    else:
        cur = conn.execute(
            "UPDATE tokens SET revoked_at = now() WHERE annotator_id = %s AND revoked_at IS NULL "
            "AND scope IS NOT NULL AND scope <@ %s::text[]",
            (annotator_id, list(within)),
        )
    return cur.rowcount


def revoke_token(conn: Conn, token_hash: str) -> bool:
    cur = conn.execute(
        "UPDATE tokens SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL",
        (token_hash,),
    )
    return cur.rowcount > 0


def lookup_token(conn: Conn, token_hash: str) -> tuple[Principal, datetime, bool] | None:
    """The principal a token stands for, with every membership its scope reaches, its
    expiry and revocation. A scoped token never carries admin."""
    row = conn.execute(
        "SELECT a.annotator_id, CASE WHEN t.scope IS NULL THEN a.role ELSE 'person' END, "
        "t.expires_at, t.revoked_at IS NOT NULL, "
        "coalesce((SELECT json_agg(json_build_array(m.project, m.role, m.status, m.status_reason)) "
        "FROM memberships m WHERE m.annotator_id = a.annotator_id "
        "AND (t.scope IS NULL OR m.project = ANY(t.scope))), '[]') "
        "FROM tokens t JOIN annotators a USING (annotator_id) WHERE t.token_hash = %s",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    raw = row[4] if isinstance(row[4], list) else json.loads(row[4])
    memberships = tuple((p, Membership(role, status, reason)) for p, role, status, reason in raw)
    principal = Principal(row[0], admin=row[1] == "admin", memberships=memberships)
    return principal, row[2], bool(row[3])


def insert_sign_in_link(
    conn: Conn,
    code_hash: str,
    annotator_id: str,
    project: str,
    created_by: str,
    expires_at: datetime,
) -> None:
    conn.execute(
        "INSERT INTO sign_in_links (code_hash, annotator_id, project, created_by, expires_at) "
        "VALUES (%s, %s, %s, %s, %s)",
        (code_hash, annotator_id, project, created_by, expires_at),
    )


def use_sign_in_link(conn: Conn, code_hash: str, now: datetime) -> tuple[str, str] | None:
    """(annotator, project) of an unused, unexpired link whose holder is still a member
    there, marked used; None for anything else (the caller cannot tell which)."""
    row = conn.execute(
        "UPDATE sign_in_links l SET used_at = %s WHERE code_hash = %s AND used_at IS NULL "
        "AND expires_at > %s AND EXISTS (SELECT 1 FROM memberships m "
        "WHERE m.annotator_id = l.annotator_id AND m.project = l.project) "
        "RETURNING annotator_id, project",
        (now, code_hash, now),
    ).fetchone()
    return (row[0], row[1]) if row else None


# -- memberships ---------------------------------------------------------------------


def add_member(conn: Conn, project: str, annotator_id: str, role: str, by: str) -> bool:
    """Make `annotator_id` a member with `role`; False when they were one (role updated)."""
    row = conn.execute(
        "INSERT INTO memberships (project, annotator_id, role, added_by) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (project, annotator_id) DO UPDATE SET role = EXCLUDED.role "
        "RETURNING xmax = 0",
        (project, annotator_id, role, by),
    ).fetchone()
    return bool(row and row[0])


def remove_member(conn: Conn, project: str, annotator_id: str) -> bool:
    cur = conn.execute(
        "DELETE FROM memberships WHERE project = %s AND annotator_id = %s",
        (project, annotator_id),
    )
    return cur.rowcount > 0


def set_status(conn: Conn, project: str, annotator_id: str, status: str, reason: str) -> bool:
    """Change a member's status in one project; False when they are not a member."""
    cur = conn.execute(
        "UPDATE memberships SET status = %s, status_reason = %s, status_changed_at = now() "
        "WHERE project = %s AND annotator_id = %s",
        (status, reason, project, annotator_id),
    )
    return cur.rowcount > 0


@dataclass(frozen=True)
class MemberRow:
    annotator_id: str
    display_name: str
    admin: bool
    role: str  # in the project; "" when listed without one
    status: str
    status_reason: str
    labels_submitted: int
    projects: tuple[str, ...] = ()


def list_members(conn: Conn, project: str) -> list[MemberRow]:
    rows = conn.execute(
        "SELECT a.annotator_id, a.display_name, a.role = 'admin', m.role, m.status, "
        "m.status_reason, (SELECT count(*) FROM labels l WHERE l.annotator_id = a.annotator_id "
        "AND l.project = m.project) FROM memberships m JOIN annotators a USING (annotator_id) "
        "WHERE m.project = %s ORDER BY a.annotator_id",
        (project,),
    ).fetchall()
    return [MemberRow(*r) for r in rows]


def list_people(conn: Conn) -> list[MemberRow]:
    """Everyone, with their projects (an admin's view without a project)."""
    rows = conn.execute(
        "SELECT a.annotator_id, a.display_name, a.role = 'admin', "
        "(SELECT count(*) FROM labels l WHERE l.annotator_id = a.annotator_id), "
        "coalesce((SELECT array_agg(m.project ORDER BY m.project) FROM memberships m "
        "WHERE m.annotator_id = a.annotator_id), '{}') FROM annotators a ORDER BY a.annotator_id"
    ).fetchall()
    return [MemberRow(r[0], r[1], r[2], "", "active", "", r[3], tuple(r[4])) for r in rows]


# -- audit ---------------------------------------------------------------------------


def audit(conn: Conn, entry: AuditEntry) -> None:
    insert_entry(conn, entry)


@dataclass(frozen=True)
class AuditFilter:
    projects: Sequence[str] | None = None  # None: every project (an admin)
    actor: str = ""
    action: str = ""
    outcome: str = ""
    service: str = ""
    since: datetime | None = None
    until: datetime | None = None
    before_id: int = 0
    limit: int = 100


_AUDIT_COLUMNS = (
    "id, at, service, actor, actor_kind, source, rpc, project, action, target, outcome, code, "
    "reason, detail"
)


def list_audit(conn: Conn, f: AuditFilter) -> list[tuple[Any, ...]]:
    """Audit rows matching `f`, newest first."""
    where: list[str] = []
    args: list[Any] = []
    if f.projects is not None:
        where.append("project = ANY(%s)")
        args.append(list(f.projects))
    for column, value in (
        ("actor", f.actor),
        ("action", f.action),
        ("outcome", f.outcome),
        ("service", f.service),
    ):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    if f.since is not None:
        where.append("at >= %s")
        args.append(f.since)
    if f.until is not None:
        where.append("at < %s")
        args.append(f.until)
    if f.before_id:
        where.append("id < %s")
        args.append(f.before_id)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    args.append(f.limit)
    return conn.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log {clause}ORDER BY id DESC LIMIT %s", args
    ).fetchall()
