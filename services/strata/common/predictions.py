"""`strata.predictions`: a model's predictions travel many to a message.

A re-scored pool of a million items is then a few thousand events for the outbox,
the broker and each consumer (the sampler, the gateway, quality), not a million.
Messages are keyed by bucket, not by item: an item's predictions always travel in its
bucket's messages, so on one partition and in order, and "the newest prediction
wins" holds as it did when each was keyed by its item.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

from strata.common.consumer import BatchContext
from strata.common.events import Event, OutgoingEvent, make_event
from strata.common.topics import PREDICTIONS
from strata.v1 import common_pb2, events_pb2

BUCKETS = 32  # more than a topic's partitions will be: one bucket, one partition
CHUNK = 256  # predictions a message at most (about 1-2 KiB each with an embedding)


def bucket_of(item_id: str) -> int:
    """The item's bucket: stable across processes and releases (crc32, not hash())."""
    return zlib.crc32(item_id.encode()) % BUCKETS


def prediction_events(
    routing: common_pb2.RoutingMetadata, predictions: Sequence[common_pb2.Prediction]
) -> list[OutgoingEvent]:
    """`predictions` (one batch's, each item once) as `strata.predictions` events: by
    bucket, in the given order within each, `CHUNK` a message at most; all carry
    `routing`."""
    buckets: dict[int, list[common_pb2.Prediction]] = {}
    for p in predictions:
        buckets.setdefault(bucket_of(p.item_id), []).append(p)
    events = []
    for bucket, members in sorted(buckets.items()):
        for start in range(0, len(members), CHUNK):
            msg = events_pb2.PredictionsMade(
                routing=routing, predictions=members[start : start + CHUNK]
            )
            events.append(make_event(PREDICTIONS, f"bucket-{bucket}", msg))
    return events


def predictions_of(events: Sequence[Event]) -> Iterator[tuple[Event, common_pb2.Prediction]]:
    """Each prediction of `strata.predictions` events, in order, with its event."""
    for event in events:
        msg = event.message
        assert isinstance(msg, events_pb2.PredictionsMade)
        for p in msg.predictions:
            yield event, p


def reject_prediction(
    ctx: BatchContext, event: Event, prediction: common_pb2.Prediction, why: str
) -> None:
    """Dead-letter one prediction of a message; the others apply."""
    msg = event.message
    assert isinstance(msg, events_pb2.PredictionsMade)
    ctx.reject(
        event, why, events_pb2.PredictionsMade(routing=msg.routing, predictions=[prediction])
    )
