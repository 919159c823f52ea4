"""The event envelope: a protobuf payload plus the headers every event carries."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from strata.common.topics import TopicSpec, topic

HEADER_EVENT_ID = "event-id"
HEADER_EVENT_TYPE = "event-type"
HEADER_TRACE_ID = "trace-id"
HEADER_SCHEMA = "schema"


class EventDecodeError(Exception):
    """A record that cannot be turned into an Event (poison)."""


@dataclass(frozen=True)
class OutgoingEvent:
    """An event ready to be written to the outbox or sent to the broker."""

    topic: str
    key: bytes | None
    payload: bytes
    event_id: str
    event_type: str
    trace_id: str
    schema: str
    # Only for control records that must land on one partition; events go by key.
    partition: int | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers as kafka-python wants them."""
        return [
            (HEADER_EVENT_ID, self.event_id.encode()),
            (HEADER_EVENT_TYPE, self.event_type.encode()),
            (HEADER_TRACE_ID, self.trace_id.encode()),
            (HEADER_SCHEMA, self.schema.encode()),
        ]


def _trace_id_of(message: Message) -> str:
    routing = getattr(message, "routing", None)
    return str(getattr(routing, "trace_id", "") or "")


def random_uuids(n: int) -> list[bytes]:
    """`n` random (version 4) UUIDs as 16 raw bytes each, made in bulk."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])
    whole = bytes(raw)
    return [whole[i : i + 16] for i in range(0, 16 * n, 16)]


def new_event_ids(n: int) -> list[str]:
    """`n` random (version 4) UUIDs as strings, made in bulk: uuid4() per event costs
    more than the rest of building a small event."""
    h = b"".join(random_uuids(n)).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def make_event(
    topic_name: str | TopicSpec,
    key: str | bytes | None,
    message: Message,
    *,
    trace_id: str | None = None,
    event_id: str | None = None,
) -> OutgoingEvent:
    """Envelope `message` for `topic_name`; the payload type must match the topic's."""
    spec = topic_name if isinstance(topic_name, TopicSpec) else topic(topic_name)
    if not isinstance(message, spec.message_type):
        raise TypeError(f"{spec.name} carries {spec.schema}, not {message.DESCRIPTOR.full_name}")
    raw_key = key.encode() if isinstance(key, str) else key
    return OutgoingEvent(
        topic=spec.name,
        key=raw_key,
        payload=message.SerializeToString(),
        event_id=event_id or str(uuid.uuid4()),
        event_type=spec.event_type,
        trace_id=trace_id or _trace_id_of(message) or uuid.uuid4().hex,
        schema=spec.schema,
    )


@dataclass(frozen=True)
class Event:
    """A decoded event as a handler sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    event_id: str
    event_type: str
    trace_id: str
    schema: str
    message: Message
    headers: dict[str, str] = field(default_factory=dict)


def header_map(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as a str dict (undecodable values are replaced, not fatal)."""
    result: dict[str, str] = {}
    for name, value in headers or ():
        result[name] = (value or b"").decode("utf-8", errors="replace")
    return result


def decode(
    topic_name: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
) -> Event:
    """Decode one record; raises EventDecodeError saying what is wrong with it."""
    hdrs = header_map(headers)
    try:
        spec = topic(topic_name)
    except KeyError as exc:
        raise EventDecodeError(str(exc)) from None
    event_id = hdrs.get(HEADER_EVENT_ID, "")
    if not event_id:
        raise EventDecodeError(f"missing header {HEADER_EVENT_ID!r}")
    schema = hdrs.get(HEADER_SCHEMA, "")
    reader = spec.reader(schema)
    if reader is None:
        raise EventDecodeError(
            f"header schema={schema!r} does not match {spec.name}, which carries {spec.schema}"
        )
    if value is None:
        raise EventDecodeError("empty payload (tombstone)")
    message_type, upgrade = reader
    message = message_type()
    try:
        message.ParseFromString(value)
    except (ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise EventDecodeError(f"payload is not a valid {schema}: {exc}") from None
    if upgrade is not None:
        # Read as the topic's message from here on (a dead letter replays as one).
        message = upgrade(message)
        schema = hdrs[HEADER_SCHEMA] = spec.schema
    return Event(
        topic=topic_name,
        partition=partition,
        offset=offset,
        key=key,
        event_id=event_id,
        event_type=hdrs.get(HEADER_EVENT_TYPE, spec.event_type),
        trace_id=hdrs.get(HEADER_TRACE_ID, ""),
        schema=schema,
        message=message,
        headers=hdrs,
    )
