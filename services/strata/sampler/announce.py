"""The import's announcements: each item's `ItemImported`, encoded fast, and the
outbox rows (`ItemsImported` on strata.items.imported) that carry them in chunks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from strata.common import outbox, pgcopy, wire
from strata.common.events import random_uuids
from strata.common.topics import ITEMS_IMPORTED
from strata.v1 import common_pb2, events_pb2, sampler_pb2


def random_ids(n: int) -> list[str]:
    """`n` random 128-bit ids as 32 hex digits (one urandom call, not n uuid4 calls)."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


# How many items, and bytes of them, one strata.items.imported message carries at most:
# a million-item import is then a few thousand events for the relay, the broker and each
# consuming service, not a million; and a message stays well under the broker's 1 MiB.
CHUNK_ITEMS = 500
CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class Announcement:
    """One item's announcement: its id and its serialised `ItemImported`."""

    item_id: str
    payload: bytes


def announcements(
    project: str,
    item_ids: Sequence[str],
    rows: Sequence[sampler_pb2.ImportRow],
    digests: Sequence[str],
    contents: Sequence[bytes],
) -> list[Announcement]:
    """Each item's `ItemImported`, each starting its own trace (`outbox_rows` packs them).

    An import announces tens of thousands of items a second, so the payloads are not
    built message by message: the fields every item shares are serialised once and
    each item's own fields (ids, serialised content, hash) spliced in
    (`strata.common.wire`); the tests parse them against the protobuf API's message.
    """
    imported_at = Timestamp()
    imported_at.GetCurrentTime()
    shared_routing = common_pb2.RoutingMetadata(
        source_service="sampler", project=project
    ).SerializeToString()
    gold_routing = common_pb2.RoutingMetadata(
        reason=common_pb2.ROUTING_REASON_GOLD
    ).SerializeToString()
    shared_item = common_pb2.Item(project=project, imported_at=imported_at).SerializeToString()
    field, size = wire.length_delimited, wire.varint
    encoded = []
    for item_id, row, digest, content, trace_id in zip(
        item_ids, rows, digests, contents, random_ids(len(item_ids)), strict=True
    ):
        key = item_id.encode()
        trace = trace_id.encode()
        routing = _TRACE_ID_TAG + size(len(trace)) + trace + shared_routing
        item = (
            _ITEM_ID_TAG
            + size(len(key))
            + key
            + shared_item
            + _CONTENT_TAG
            + size(len(content))
            + content
            + field(_CONTENT_HASH, digest.encode())
            + field(_EXTERNAL_ID, row.external_id.encode())
        )
        if row.metadata:
            item += common_pb2.Item(metadata=row.metadata).SerializeToString()
        if row.gold_answer:
            routing += gold_routing
        payload = b"".join(
            (
                _ROUTING_TAG,
                size(len(routing)),
                routing,
                _ITEM_TAG,
                size(len(item)),
                item,
                field(_GOLD_ANSWER, row.gold_answer.encode()),
            )
        )
        encoded.append(Announcement(item_id, payload))
    return encoded


def outbox_rows(project: str, announced: Sequence[Announcement]) -> list[bytes]:
    """Outbox rows carrying `announced` in order, `CHUNK_ITEMS` or `CHUNK_BYTES` at most
    a row (an item larger than that goes alone), on the bulk lane. Each is keyed by its
    first item's id and continues that item's trace."""
    topic = pgcopy.text(ITEMS_IMPORTED.name)
    event_type = pgcopy.text(ITEMS_IMPORTED.event_type)
    schema = pgcopy.text(ITEMS_IMPORTED.schema)
    rows: list[bytes] = []
    chunk: list[bytes] = []
    first: Announcement | None = None
    size = 0

    def close() -> None:
        assert first is not None
        trace_id = events_pb2.ItemImported.FromString(first.payload).routing.trace_id
        trace = trace_id.encode()
        routing = common_pb2.RoutingMetadata(
            source_service="sampler", project=project, trace_id=trace_id
        ).SerializeToString()
        chunk.append(wire.length_delimited(_ROUTING_OF_ITEMS, routing))
        rows.append(
            outbox.encode_row(
                (
                    pgcopy.uuid(random_uuids(1)[0]),
                    topic,
                    pgcopy.bytea(first.item_id.encode()),
                    event_type,
                    schema,
                    pgcopy.bytea(trace),  # the same bytes as its text
                    pgcopy.bytea(b"".join(chunk)),
                ),
                bulk=True,
            )
        )

    for announcement in announced:
        element = _ITEMS_TAG + wire.varint(len(announcement.payload)) + announcement.payload
        # (1 KiB kept for the message's own routing)
        if chunk and (len(chunk) == CHUNK_ITEMS or size + len(element) > CHUNK_BYTES - 1024):
            close()
            chunk, size = [], 0
        if not chunk:
            first = announcement
        chunk.append(element)
        size += len(element)
    if chunk:
        close()
    return rows


def duplicate_announcement(
    project: str,
    item_id: str,
    row: sampler_pb2.ImportRow,
    digest: str,
    content: bytes,
    canonical: str | None,
) -> Announcement:
    """A duplicate's announcement: its ItemImported names its canonical item."""
    item = common_pb2.Item(
        item_id=item_id,
        project=project,
        content=common_pb2.ItemContent.FromString(content),
        metadata=row.metadata,
        content_hash=digest,
        external_id=row.external_id,
        canonical_item_id=canonical or "",
    )
    item.imported_at.GetCurrentTime()
    msg = events_pb2.ItemImported(
        routing=common_pb2.RoutingMetadata(
            source_service="sampler", project=project, trace_id=uuid.uuid4().hex
        ),
        item=item,
    )
    return Announcement(item_id, msg.SerializeToString())


_TRACE_ID_TAG = wire.tag(common_pb2.RoutingMetadata.TRACE_ID_FIELD_NUMBER)
_ITEM_ID_TAG = wire.tag(common_pb2.Item.ITEM_ID_FIELD_NUMBER)
_CONTENT_TAG = wire.tag(common_pb2.Item.CONTENT_FIELD_NUMBER)
_ROUTING_TAG = wire.tag(events_pb2.ItemImported.ROUTING_FIELD_NUMBER)
_ITEM_TAG = wire.tag(events_pb2.ItemImported.ITEM_FIELD_NUMBER)
_CONTENT_HASH = common_pb2.Item.CONTENT_HASH_FIELD_NUMBER
_EXTERNAL_ID = common_pb2.Item.EXTERNAL_ID_FIELD_NUMBER
_GOLD_ANSWER = events_pb2.ItemImported.GOLD_ANSWER_FIELD_NUMBER
_ITEMS_TAG = wire.tag(events_pb2.ItemsImported.ITEMS_FIELD_NUMBER)
_ROUTING_OF_ITEMS = events_pb2.ItemsImported.ROUTING_FIELD_NUMBER
