"""The envelope: headers, type checks, and clear reasons for poison records."""

import uuid

import pytest
from strata.common.events import EventDecodeError, decode, make_event, new_event_ids
from strata.common.topics import ALL_TOPICS, ITEMS_IMPORTED, LABELS_SUBMITTED, PREDICTIONS, topic
from strata.v1 import common_pb2, events_pb2


def _label_event():
    msg = events_pb2.LabelSubmitted(
        routing=common_pb2.RoutingMetadata(trace_id="t-1", project="p"),
        label=common_pb2.Label(label_id="l1", item_id="i1", annotator_id="a1", value="cat"),
    )
    return msg, make_event(LABELS_SUBMITTED.name, "i1", msg)


def test_envelope_round_trips_with_headers() -> None:
    msg, out = _label_event()
    headers = dict(out.headers())
    assert headers["schema"] == b"strata.v1.LabelSubmitted"
    assert headers["event-type"] == b"label.submitted"
    assert headers["trace-id"] == b"t-1", "the routing trace id becomes the header"
    assert len(headers["event-id"]) == 36
    event = decode(out.topic, 2, 7, out.key, out.payload, out.headers())
    assert event.message == msg and event.event_id == out.event_id
    assert (event.partition, event.offset, event.key) == (2, 7, b"i1")


def test_wrong_payload_type_for_topic_is_refused() -> None:
    with pytest.raises(
        TypeError, match=r"strata\.labels\.submitted carries strata\.v1\.LabelSubmitted"
    ):
        make_event(LABELS_SUBMITTED.name, "k", events_pb2.Probe())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, p: ([x for x in h if x[0] != "event-id"], p), "missing header 'event-id'"),
        (
            lambda h, p: ([(k, b"strata.v1.Probe" if k == "schema" else v) for k, v in h], p),
            "does not match",
        ),
        (lambda h, p: (h, b"\xff\xff\xff\xff"), "not a valid strata.v1.LabelSubmitted"),
        (lambda h, p: (h, None), "tombstone"),
    ],
)
def test_poison_records_say_what_is_wrong(mutate, reason: str) -> None:
    _msg, out = _label_event()
    headers, payload = mutate(out.headers(), out.payload)
    with pytest.raises(EventDecodeError, match=reason):
        decode(out.topic, 0, 0, out.key, payload, headers)


def test_unknown_topic_is_poison_not_a_crash() -> None:
    _msg, out = _label_event()
    with pytest.raises(EventDecodeError, match="unknown topic"):
        decode("strata.nope", 0, 0, None, out.payload, out.headers())


def test_catalog_maps_every_event_message_to_exactly_one_topic() -> None:
    payloads = [t.message_type.DESCRIPTOR.name for t in ALL_TOPICS]
    assert len(payloads) == len(set(payloads))
    # Parts of a payload, not payloads: GoldLogits; ItemImported and PredictionMade (the
    # one-item payloads strata.items.imported and strata.predictions carried before).
    parts = {"GoldLogits", "ItemImported", "PredictionMade"}
    top_level = set(events_pb2.DESCRIPTOR.message_types_by_name) - parts
    assert set(payloads) == top_level
    for t in ALL_TOPICS:
        assert t.name.startswith("strata.") and t.partitions >= 1
        assert topic(t.name) is t


def test_an_item_announced_alone_as_before_chunks_reads_as_a_chunk_of_one() -> None:
    item = events_pb2.ItemImported(
        routing=common_pb2.RoutingMetadata(trace_id="t1", project="p"),
        item=common_pb2.Item(item_id="i1", project="p"),
    )
    out = make_event(ITEMS_IMPORTED, "i1", events_pb2.ItemsImported(items=[item]))
    older = [(k, b"strata.v1.ItemImported" if k == "schema" else v) for k, v in out.headers()]
    event = decode(out.topic, 0, 7, out.key, item.SerializeToString(), older)
    assert event.message == events_pb2.ItemsImported(items=[item])
    # From here on it is the topic's message (a dead letter replays as one).
    assert event.schema == event.headers["schema"] == ITEMS_IMPORTED.schema
    assert decode(out.topic, 0, 8, out.key, out.payload, out.headers()).message == event.message
    # Any other payload type is still poison.
    wrong = [(k, b"strata.v1.PredictionMade" if k == "schema" else v) for k, v in out.headers()]
    with pytest.raises(EventDecodeError, match="does not match"):
        decode(out.topic, 0, 9, out.key, out.payload, wrong)


def test_bulk_event_ids_are_distinct_version_4_uuids() -> None:
    ids = new_event_ids(5000)
    assert len(set(ids)) == 5000 and new_event_ids(0) == []
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_prediction_sent_alone_as_before_reads_as_a_message_of_one() -> None:
    routing = common_pb2.RoutingMetadata(trace_id="t2", project="p")
    p = common_pb2.Prediction(item_id="i1", project="p", model_version="m1")
    out = make_event(
        PREDICTIONS, "i1", events_pb2.PredictionsMade(routing=routing, predictions=[p])
    )
    older = [(k, b"strata.v1.PredictionMade" if k == "schema" else v) for k, v in out.headers()]
    alone = events_pb2.PredictionMade(routing=routing, prediction=p).SerializeToString()
    event = decode(out.topic, 0, 1, out.key, alone, older)
    assert event.message == events_pb2.PredictionsMade(routing=routing, predictions=[p])
    assert event.schema == PREDICTIONS.schema
