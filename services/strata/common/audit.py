"""The audit trail: every refused call and every administrative or decisive action.

Each service writes its records through an `AuditSink`: the gateway, which keeps the
audit table, straight into it; every other service into its outbox, on
`strata.audit`, from which the gateway copies them (idempotent on the event id). A
record written with `write` shares the caller's transaction, so an action and its
audit row commit together. A record never holds a token: callers pass identities,
never credentials.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from strata.common import outbox
from strata.common.topics import AUDIT
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]

REFUSED = "refused"
DONE = "done"


@dataclass(frozen=True)
class AuditEntry:
    """One audit record, as a service states it."""

    service: str
    action: str
    outcome: str = DONE
    actor: str = ""
    actor_kind: str = ""
    source: str = ""
    rpc: str = ""
    project: str = ""
    target: str = ""
    code: str = ""
    reason: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_event(self) -> events_pb2.AuditRecorded:
        """The record as it travels on strata.audit."""
        msg = events_pb2.AuditRecorded(
            routing=common_pb2.RoutingMetadata(
                source_service=self.service, project=self.project, trace_id=uuid.uuid4().hex
            ),
            event_id=self.event_id,
            service=self.service,
            actor=self.actor,
            actor_kind=self.actor_kind,
            source=self.source,
            rpc=self.rpc,
            project=self.project,
            action=self.action,
            target=self.target,
            outcome=self.outcome,
            code=self.code,
            reason=self.reason[:1000],
            detail_json=json.dumps(dict(self.detail), sort_keys=True, default=str),
        )
        msg.at.FromDatetime(self.at)
        return msg


def entry_from_event(msg: events_pb2.AuditRecorded) -> AuditEntry:
    """An audit record received on strata.audit."""
    try:
        detail = json.loads(msg.detail_json) if msg.detail_json else {}
    except ValueError:
        detail = {"unparsed": msg.detail_json[:1000]}
    return AuditEntry(
        service=msg.service,
        action=msg.action,
        outcome=msg.outcome or DONE,
        actor=msg.actor,
        actor_kind=msg.actor_kind,
        source=msg.source,
        rpc=msg.rpc,
        project=msg.project,
        target=msg.target,
        code=msg.code,
        reason=msg.reason,
        detail=detail if isinstance(detail, dict) else {"value": detail},
        event_id=msg.event_id or str(uuid.uuid4()),
        at=msg.at.ToDatetime(tzinfo=UTC) if msg.HasField("at") else datetime.now(UTC),
    )


class AuditSink(Protocol):
    def write(self, conn: Conn, entry: AuditEntry) -> None:
        """Record `entry` in the caller's transaction."""

    def record(self, entry: AuditEntry) -> None:
        """Record `entry` in a transaction of its own."""


Transaction = Callable[[], AbstractContextManager[Conn]]


class _Sink:
    def __init__(self, transaction: Transaction) -> None:
        self._transaction = transaction

    def write(self, conn: Conn, entry: AuditEntry) -> None:
        raise NotImplementedError

    def record(self, entry: AuditEntry) -> None:
        try:
            with self._transaction() as conn:
                self.write(conn, entry)
        except psycopg.Error as exc:
            # The refusal itself stands; losing its record is logged, never silent.
            log.error("audit record %s/%s not written: %s", entry.action, entry.rpc, exc)


class OutboxAudit(_Sink):
    """A service's audit records, published on strata.audit through its outbox."""

    def write(self, conn: Conn, entry: AuditEntry) -> None:
        outbox.publish(conn, AUDIT.name, entry.service, entry.to_event(), event_id=entry.event_id)


def insert_entry(conn: Conn, entry: AuditEntry) -> bool:
    """Store a record in the gateway's audit table; False when its event id is there."""
    cur = conn.execute(
        "INSERT INTO audit_log (event_id, at, service, actor, actor_kind, source, rpc, project, "
        "action, target, outcome, code, reason, detail) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) "
        "ON CONFLICT (event_id) DO NOTHING",
        (
            entry.event_id,
            entry.at,
            entry.service,
            entry.actor,
            entry.actor_kind,
            entry.source,
            entry.rpc,
            entry.project,
            entry.action,
            entry.target,
            entry.outcome,
            entry.code,
            entry.reason[:1000],
            json.dumps(dict(entry.detail), sort_keys=True, default=str),
        ),
    )
    return cur.rowcount > 0


class TableAudit(_Sink):
    """The gateway's own records, written straight into its audit table."""

    def write(self, conn: Conn, entry: AuditEntry) -> None:
        insert_entry(conn, entry)
