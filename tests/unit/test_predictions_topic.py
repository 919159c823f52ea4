"""strata.predictions: many predictions a message, each item always in its bucket's."""

from __future__ import annotations

import zlib

from strata.common.consumer import BatchContext
from strata.common.events import decode
from strata.common.predictions import (
    BUCKETS,
    CHUNK,
    bucket_of,
    prediction_events,
    predictions_of,
    reject_prediction,
)
from strata.common.topics import PREDICTIONS
from strata.v1 import common_pb2, events_pb2


def _made(n: int, version: str = "m1") -> list[common_pb2.Prediction]:
    return [common_pb2.Prediction(item_id=f"i{k}", model_version=version) for k in range(n)]


def _decoded(events):  # type: ignore[no-untyped-def]
    return [decode(e.topic, 0, k, e.key, e.payload, e.headers()) for k, e in enumerate(events)]


def test_predictions_go_by_bucket_in_order_a_chunk_at_most_a_message() -> None:
    routing = common_pb2.RoutingMetadata(trace_id="t", project="p", source_service="inference")
    made = _made(20 * CHUNK)
    events = prediction_events(routing, made)
    assert all(e.topic == PREDICTIONS.name and e.trace_id == "t" for e in events)
    seen = []
    for event in _decoded(events):
        msg = event.message
        assert isinstance(msg, events_pb2.PredictionsMade) and msg.routing == routing
        assert 0 < len(msg.predictions) <= CHUNK
        # Every prediction of a message is of the bucket its key names.
        assert {f"bucket-{bucket_of(p.item_id)}".encode() for p in msg.predictions} == {event.key}
        seen += [p.item_id for p in msg.predictions]
    assert sorted(seen) == sorted(p.item_id for p in made)
    # Within a bucket, the batch's order holds.
    for b in range(BUCKETS):
        mine = [i for i in seen if bucket_of(i) == b]
        assert mine == [p.item_id for p in made if bucket_of(p.item_id) == b]
    assert len(events) < len(made) / 10
    assert prediction_events(routing, []) == []


def test_an_item_keeps_its_key_across_versions_so_the_newest_arrives_last() -> None:
    routing = common_pb2.RoutingMetadata()
    first = {p.item_id: e.key for e in prediction_events(routing, _made(300)) for p in
             events_pb2.PredictionsMade.FromString(e.payload).predictions}  # fmt: skip
    second = {p.item_id: e.key for e in prediction_events(routing, _made(300, "m2")) for p in
              events_pb2.PredictionsMade.FromString(e.payload).predictions}  # fmt: skip
    assert first == second
    # The bucket is crc32, not Python's per-process hash().
    assert bucket_of("item-7") == zlib.crc32(b"item-7") % BUCKETS


def test_one_bad_prediction_is_dead_lettered_alone() -> None:
    routing = common_pb2.RoutingMetadata(trace_id="t")
    (event,) = _decoded(prediction_events(routing, [common_pb2.Prediction(item_id="i1")] * 3))
    ctx = BatchContext(conn=None, events=[event])  # type: ignore[arg-type]
    pairs = list(predictions_of([event]))
    assert len(pairs) == 3
    reject_prediction(ctx, event, pairs[1][1], "bad")
    ((rejected, why, part),) = ctx.rejected
    assert rejected is event and why == "bad" and ctx.rejected_whole == 0
    assert part == events_pb2.PredictionsMade(routing=routing, predictions=[pairs[1][1]])
