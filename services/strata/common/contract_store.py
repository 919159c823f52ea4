"""A service's own copy of the labeling contracts it applies, from `strata.contracts`.

The gateway owns contracts; each service that applies them keeps the versions it
has received in a `contracts` table of its own schema (same DDL in each).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg

from strata.common.consumer import Handler, HandlerContext
from strata.common.contracts import ContractCache
from strata.common.events import Event
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

Conn = psycopg.Connection[Any]


def save_contract(conn: Conn, contract: common_pb2.LabelingContract) -> bool:
    """Keep a copy of a contract version; versions are immutable, so a repeat is ignored."""
    cur = conn.execute(
        "INSERT INTO contracts (project, version, contract, loaded_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (
            contract.project,
            contract.version,
            contract.SerializeToString(),
            contract.loaded_at.ToDatetime(tzinfo=UTC)
            if contract.HasField("loaded_at")
            else datetime.now(UTC),
        ),
    )
    return cur.rowcount == 1


def load_contract(
    conn: Conn, project: str, version: str | None = None
) -> common_pb2.LabelingContract | None:
    """A contract version, or the project's latest when `version` is None."""
    if version:
        row = conn.execute(
            "SELECT contract FROM contracts WHERE project = %s AND version = %s",
            (project, version),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT contract FROM contracts WHERE project = %s "
            "ORDER BY loaded_at DESC, version DESC LIMIT 1",
            (project,),
        ).fetchone()
    if row is None:
        return None
    contract = common_pb2.LabelingContract()
    contract.ParseFromString(row[0])
    return contract


def projects(conn: Conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT project FROM contracts ORDER BY 1")]


def contract_handler(contracts: ContractCache) -> Handler:
    """The `strata.contracts` handler: keep each received version, refresh the cache."""

    def on_contract(ctx: HandlerContext, event: Event) -> None:
        msg = event.message
        assert isinstance(msg, events_pb2.ContractLoaded)
        if not msg.contract.project or not msg.contract.version:
            raise ValueError("a contract event needs the contract's project and version")
        if save_contract(ctx.conn, msg.contract):
            contracts.invalidate(msg.contract.project)
            log.info("contract %s %s received", msg.contract.project, msg.contract.version)

    return on_contract
