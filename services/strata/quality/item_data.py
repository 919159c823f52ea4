"""What each item is, as imported: kept from `items.imported` so an export row can
carry the item's content, external id and metadata (`content_json` is the pure part),
and so an import of answers finds its items by external id (gold items included)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from strata.quality.store import Conn
from strata.v1 import common_pb2, events_pb2


@dataclass(frozen=True)
class ItemData:
    item_id: str
    project: str
    external_id: str
    content: bytes
    metadata: dict[str, str]
    canonical_item_id: str | None
    imported_at: datetime | None
    gold_answer: str | None = None


def from_event(msg: events_pb2.ItemImported) -> ItemData:
    """The row of an imported item (a gold item keeps its answer; it is never exported:
    quality never accepts a gold item)."""
    item = msg.item
    return ItemData(
        item.item_id,
        item.project,
        item.external_id,
        item.content.SerializeToString(),
        dict(item.metadata),
        item.canonical_item_id or None,
        item.imported_at.ToDatetime(tzinfo=UTC) if item.HasField("imported_at") else None,
        msg.gold_answer or None,
    )


def save(conn: Conn, rows: Sequence[ItemData]) -> None:
    """Keep each item once (an item's content never changes after import)."""
    if not rows:
        return
    conn.execute(
        "INSERT INTO item_data (item_id, project, external_id, content, metadata, "
        "canonical_item_id, imported_at, gold_answer) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], %s::jsonb[], "
        "%s::text[], %s::timestamptz[], %s::text[]) ON CONFLICT (item_id) DO NOTHING",
        (
            [r.item_id for r in rows],
            [r.project for r in rows],
            [r.external_id for r in rows],
            [r.content for r in rows],
            [json.dumps(r.metadata) for r in rows],
            [r.canonical_item_id for r in rows],
            [r.imported_at for r in rows],
            [r.gold_answer for r in rows],
        ),
    )


def content_json(raw: bytes | None, inline_images: bool = False) -> dict[str, Any]:
    """An item's content as an export row's `data`: {"text"}, {"features"}, or an image
    as {"image": URI} (its stored URI, or a data: URI of its PNG) or, `inline_images`,
    {"image_base64", "image_mime"}; with "width" and "height" when known."""
    if raw is None:
        return {}
    content = common_pb2.ItemContent.FromString(raw)
    kind = content.WhichOneof("kind")
    if kind == "text":
        return {"text": content.text}
    if kind == "features":
        return {"features": [float(v) for v in content.features.values]}
    if kind == "image":
        image = content.image
        size = {k: v for k, v in (("width", image.width), ("height", image.height)) if v}
        if not image.png:
            return {"image": image.uri, **size}
        data = base64.b64encode(image.png).decode()
        if inline_images:
            return {"image_base64": data, "image_mime": "image/png", **size}
        return {"image": f"data:image/png;base64,{data}", **size}
    return {}
