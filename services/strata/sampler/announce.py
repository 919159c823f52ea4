"""The import's announcements: `ItemImported` outbox rows, encoded fast."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from strata.common import outbox, pgcopy, wire
from strata.common.events import make_event, random_uuids
from strata.common.topics import ITEMS_IMPORTED
from strata.v1 import common_pb2, events_pb2, sampler_pb2


def random_ids(n: int) -> list[str]:
    """`n` random 128-bit ids as 32 hex digits (one urandom call, not n uuid4 calls)."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


def announcements(
    project: str,
    item_ids: Sequence[str],
    rows: Sequence[sampler_pb2.ImportRow],
    digests: Sequence[str],
    contents: Sequence[bytes],
) -> list[bytes]:
    """Outbox rows announcing items (ItemImported on strata.items.imported, keyed by the
    item id), each starting its own trace.

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
    topic = pgcopy.text(ITEMS_IMPORTED.name)
    event_type = pgcopy.text(ITEMS_IMPORTED.event_type)
    schema = pgcopy.text(ITEMS_IMPORTED.schema)
    field, size = wire.length_delimited, wire.varint
    encoded = []
    for item_id, row, digest, content, trace_id, event_id in zip(
        item_ids,
        rows,
        digests,
        contents,
        random_ids(len(item_ids)),
        random_uuids(len(item_ids)),
        strict=True,
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
        encoded.append(
            outbox.encode_row(
                (
                    pgcopy.uuid(event_id),
                    topic,
                    pgcopy.bytea(key),
                    event_type,
                    schema,
                    pgcopy.bytea(trace),  # the same bytes as its text
                    pgcopy.bytea(payload),
                ),
                bulk=True,
            )
        )
    return encoded


def duplicate_announcement(
    project: str,
    item_id: str,
    row: sampler_pb2.ImportRow,
    digest: str,
    content: bytes,
    canonical: str | None,
) -> bytes:
    """The outbox row announcing a duplicate: its ItemImported names its canonical item."""
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
    return outbox.encode(make_event(ITEMS_IMPORTED, item_id, msg), bulk=True)


_TRACE_ID_TAG = wire.tag(common_pb2.RoutingMetadata.TRACE_ID_FIELD_NUMBER)
_ITEM_ID_TAG = wire.tag(common_pb2.Item.ITEM_ID_FIELD_NUMBER)
_CONTENT_TAG = wire.tag(common_pb2.Item.CONTENT_FIELD_NUMBER)
_ROUTING_TAG = wire.tag(events_pb2.ItemImported.ROUTING_FIELD_NUMBER)
_ITEM_TAG = wire.tag(events_pb2.ItemImported.ITEM_FIELD_NUMBER)
_CONTENT_HASH = common_pb2.Item.CONTENT_HASH_FIELD_NUMBER
_EXTERNAL_ID = common_pb2.Item.EXTERNAL_ID_FIELD_NUMBER
_GOLD_ANSWER = events_pb2.ItemImported.GOLD_ANSWER_FIELD_NUMBER
