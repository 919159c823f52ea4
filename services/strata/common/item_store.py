"""A service's own copy of imported items (inference scores them, training trains on them).

Each such service has an `items` table (item_id, project, content, gold_answer)
in its own schema; this is the one way rows get into it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg

from strata.common.consumer import BatchContext
from strata.common.events import Event
from strata.v1 import events_pb2

Conn = psycopg.Connection[Any]


def save_items(conn: Conn, rows: Sequence[tuple[str, str, bytes, str | None]]) -> dict[str, str]:
    """(item, project, content, gold answer or None). Item ids are global: an id
    already stored under another project is not overwritten; returns those ids
    with the project that owns them."""
    if not rows:
        return {}
    conn.execute(
        "INSERT INTO items (item_id, project, content, gold_answer) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::text[]) "
        "ON CONFLICT (item_id) DO NOTHING",
        (
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
        ),
    )
    owners = dict(
        conn.execute(
            "SELECT i.item_id, i.project FROM items i "
            "JOIN unnest(%s::text[], %s::text[]) AS n(item_id, project) USING (item_id) "
            "WHERE i.project <> n.project",
            ([r[0] for r in rows], [r[1] for r in rows]),
        ).fetchall()
    )
    return {str(k): str(v) for k, v in owners.items()}


def imported_items(events: Sequence[Event]) -> Iterator[tuple[Event, events_pb2.ItemImported]]:
    """Each item of `strata.items.imported` events (an import announces many a message),
    with the event that carried it."""
    for event in events:
        msg = event.message
        assert isinstance(msg, events_pb2.ItemsImported)
        for item in msg.items:
            yield event, item


def reject_item(ctx: BatchContext, event: Event, item: events_pb2.ItemImported, why: str) -> None:
    """Dead-letter one item of an import's message; the others apply."""
    ctx.reject(event, why, events_pb2.ItemsImported(items=[item]))


def items_imported(duplicates: bool) -> Callable[[BatchContext, list[Event]], None]:
    """The `strata.items.imported` handler (wrap in `Batched`): keep each item's content,
    gold ones with their answer; an id another project owns is dead-lettered. A
    duplicate (it names its canonical item) is kept only when `duplicates`: training
    trains on a copy's propagated label; inference never scores one (never handed out)."""

    def on_items_imported(ctx: BatchContext, events: list[Event]) -> None:
        rows = []
        kept: dict[str, tuple[Event, events_pb2.ItemImported]] = {}
        for event, msg in imported_items(events):
            item = msg.item
            if not item.item_id or not item.project or item.content.WhichOneof("kind") is None:
                reject_item(ctx, event, msg, "an imported item needs item_id, project and content")
                continue
            if item.canonical_item_id and not duplicates:
                continue
            kept[item.item_id] = (event, msg)
            rows.append(
                (
                    item.item_id,
                    item.project,
                    item.content.SerializeToString(),
                    msg.gold_answer or None,
                )
            )
        for item_id, owner in save_items(ctx.conn, rows).items():
            reject_item(
                ctx,
                *kept[item_id],
                f"item id {item_id!r} already belongs to project {owner!r}; "
                "item ids are global, import it under a new id",
            )

    return on_items_imported
