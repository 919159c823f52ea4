"""The event bus against the real broker and Postgres."""

from __future__ import annotations

import threading
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from strata.common import outbox
from strata.common.bus import KafkaSettings
from strata.common.consumer import HandlerContext
from strata.common.db import migrate
from strata.common.embedded import EmbeddedBroker, free_port
from strata.common.events import Event, make_event
from strata.common.topics import ALL_TOPICS, DEADLETTER, ITEMS_IMPORTED, LABELS_SUBMITTED, PROBE
from strata.v1 import common_pb2, events_pb2

from .conftest import APPLIED_TABLE, applied_counts, record_applied, wait_until


def sample(spec) -> object:
    """One realistic payload per topic, with routing metadata where it has one."""
    routing = common_pb2.RoutingMetadata(
        trace_id=uuid.uuid4().hex,
        source_service="test",
        project="digits",
        reason=common_pb2.ROUTING_REASON_UNCERTAINTY,
        attributes={"k": "v"},
    )
    msg = spec.message_type()
    if "routing" in msg.DESCRIPTOR.fields_by_name:
        msg.routing.CopyFrom(routing)
    if isinstance(msg, events_pb2.ItemsImported):
        item = msg.items.add(routing=routing)
        item.item.item_id = "i-1"
        item.item.content.features.values.extend([0.5, 1.5])
    elif isinstance(msg, events_pb2.PredictionsMade):
        msg.predictions.add(item_id="i-1", probabilities=[0.25, 0.75])
    elif isinstance(msg, events_pb2.LabelSubmitted):
        msg.label.label_id, msg.label.value = "l-1", "7"
    elif isinstance(msg, events_pb2.ConsensusUpdated):
        msg.consensus.item_id, msg.consensus.consensus_score = "i-1", 0.93
    elif isinstance(msg, events_pb2.ReviewRequested):
        msg.item_id, msg.kind = "i-1", events_pb2.REVIEW_KIND_EXPERT
    elif isinstance(msg, events_pb2.AnnotatorStatusChanged):
        msg.annotator_id, msg.status = "a-1", common_pb2.ANNOTATOR_STATUS_BLOCKED
    elif isinstance(msg, events_pb2.TrainingRequested):
        msg.project, msg.consensus_labels = "digits", 50
    elif isinstance(msg, events_pb2.ModelPublished):
        msg.model_version, msg.metrics.accuracy = "v1", 0.9
    elif isinstance(msg, events_pb2.TrainingFeedback):
        msg.depth_profiles.add(class_label="3", entropy_by_group=[0.1, 0.5])
    elif isinstance(msg, events_pb2.DeadLetter):
        msg.original_topic, msg.reason = "strata.predictions", "test"
    elif isinstance(msg, events_pb2.Probe):
        msg.probe_id = "p-1"
    return msg


def test_every_event_type_round_trips_in_a_consumer_group(runtime_factory) -> None:
    rt = runtime_factory("roundtrip")
    received: dict[str, Event] = {}
    lock = threading.Lock()

    def handle(ctx: HandlerContext, event: Event) -> None:
        with lock:
            received[event.event_id] = event

    rt.add_consumer({t.name: handle for t in ALL_TOPICS}, group=f"g-{rt.config.service}")
    started = time.monotonic()
    rt.start()
    assert rt.consumers[0].joined.wait(10), "the consumer group did not join within 10 s"
    join_s = time.monotonic() - started
    sent = {}
    with rt.db.transaction() as conn:
        for spec in ALL_TOPICS:
            msg = sample(spec)
            event_id = outbox.publish(conn, spec.name, f"key-{spec.name}", msg)
            sent[event_id] = (spec, msg)
    wait_until(lambda: set(sent) <= set(received), 30, "every event type to arrive")
    for event_id, (spec, msg) in sent.items():
        got = received[event_id]
        assert got.topic == spec.name and got.message == msg
        assert got.schema == spec.schema and got.event_type == spec.event_type
        assert got.key == f"key-{spec.name}".encode()
        assert got.trace_id == msg.routing.trace_id if hasattr(msg, "routing") else got.trace_id
    assert join_s < 10
    with rt.db.transaction() as conn:
        assert outbox.backlog(conn) == 0


def _dead_letters(bootstrap: str, since: dict[TopicPartition, int], group: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(DEADLETTER.name, 0)
    consumer.assign([tp])
    consumer.seek(tp, since.get(tp, 0))
    letters = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=300).values():
            for r in records:
                letter = events_pb2.DeadLetter.FromString(r.value)
                if letter.consumer_group == group:
                    letters.append(letter)
    consumer.close()
    return letters


def _end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    tp = TopicPartition(DEADLETTER.name, 0)
    ends = consumer.end_offsets([tp])
    consumer.close()
    return ends


def test_failing_and_undecodable_events_go_to_deadletter_and_the_partition_flows(
    runtime_factory, infra
) -> None:
    rt = runtime_factory("dlq", [APPLIED_TABLE])
    group = f"g-{rt.config.service}"

    # Same key: every record lands on one partition, behind the bad ones.
    key = f"one-partition-{rt.config.service}"

    def handle(ctx: HandlerContext, event: Event) -> None:
        if event.key != key.encode():
            return  # another test's event on the shared topic
        item_id = event.message.items[0].item.item_id
        if item_id == "poison":
            raise ValueError("cannot import item 'poison': no content")
        record_applied(ctx.conn, item_id)

    rt.add_consumer({ITEMS_IMPORTED.name: handle}, group=group)
    before = _end_offsets(infra.bootstrap)
    rt.start()
    assert rt.consumers[0].joined.wait(10)
    raw = KafkaProducer(bootstrap_servers=infra.bootstrap)
    raw.send(
        ITEMS_IMPORTED.name,
        key=key.encode(),
        value=b"\x08\x96\x01garbage",
        headers=[("event-id", b"x-1"), ("schema", b"strata.v1.ItemImported")],
    ).get(5)
    raw.close()
    with rt.db.transaction() as conn:
        for item_id in ["before", "poison", "after-1", "after-2"]:
            msg = events_pb2.ItemImported(item=common_pb2.Item(item_id=item_id))
            outbox.publish(conn, ITEMS_IMPORTED.name, key, events_pb2.ItemsImported(items=[msg]))
    wait_until(
        lambda: {"before", "after-1", "after-2"} <= set(applied_counts(rt)),
        30,
        "events after the poison ones to be processed",
    )
    letters = []
    wait_until(
        lambda: len(letters.extend(_dead_letters(infra.bootstrap, before, group)) or letters) >= 2,
        30,
        "two dead letters",
    )
    reasons = sorted(letter.reason for letter in letters)
    assert any("handler failed 3 times" in r and "no content" in r for r in reasons), reasons
    assert any(r.startswith("undecodable") for r in reasons), reasons
    handler_failure = next(x for x in letters if "handler failed" in x.reason)
    assert handler_failure.original_topic == ITEMS_IMPORTED.name
    poison = events_pb2.ItemsImported.FromString(handler_failure.payload).items[0]
    assert poison.item.item_id == "poison"
    assert handler_failure.service == rt.config.service and handler_failure.attempts == 3
    assert applied_counts(rt) == {"before": 1, "after-1": 1, "after-2": 1}


def test_the_same_event_delivered_twice_is_applied_once(runtime_factory, infra) -> None:
    rt = runtime_factory("dedup", [APPLIED_TABLE])
    key = rt.config.service

    def handle(ctx: HandlerContext, event: Event) -> None:
        if event.key == key.encode():  # not another test's probe on the shared topic
            record_applied(ctx.conn, event.message.probe_id)

    rt.add_consumer({PROBE.name: handle}, group=f"g-{rt.config.service}")
    rt.start()
    assert rt.consumers[0].joined.wait(10)
    event = make_event(PROBE.name, key, events_pb2.Probe(probe_id="once"))
    raw = KafkaProducer(bootstrap_servers=infra.bootstrap)
    for _ in range(3):  # a producer retry, a relay re-publish, a replay
        raw.send(event.topic, key=event.key, value=event.payload, headers=event.headers()).get(5)
    later = make_event(PROBE.name, key, events_pb2.Probe(probe_id="later"))
    raw.send(later.topic, key=later.key, value=later.payload, headers=later.headers()).get(5)
    raw.close()
    wait_until(lambda: "later" in applied_counts(rt), 20, "the later event")
    assert applied_counts(rt) == {"once": 1, "later": 1}
    duplicates = rt.metrics.events_consumed.labels(topic=PROBE.name, outcome="duplicate")
    assert duplicates._value.get() == 2


def test_broker_restart_while_producing_loses_nothing_and_applies_nothing_twice(
    runtime_factory, tmp_path
) -> None:
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "broker.log")
    broker.start()
    try:
        producer_rt = runtime_factory("restart_src", bootstrap=broker.bootstrap)
        consumer_rt = runtime_factory("restart_dst", [APPLIED_TABLE], bootstrap=broker.bootstrap)
        consumer_rt.add_consumer(
            {PROBE.name: lambda ctx, e: record_applied(ctx.conn, e.message.probe_id)}
        )
        producer_rt.start()
        consumer_rt.start()
        assert consumer_rt.consumers[0].joined.wait(15)
        total = 300
        ids = [f"p{i}" for i in range(total)]

        def produce() -> None:
            for i, probe_id in enumerate(ids):
                with producer_rt.db.transaction() as conn:
                    outbox.publish(conn, PROBE.name, probe_id, events_pb2.Probe(probe_id=probe_id))
                time.sleep(0.01 if i % 10 else 0.05)

        writer = threading.Thread(target=produce)
        writer.start()
        wait_until(lambda: len(applied_counts(consumer_rt)) >= 60, 30, "some events consumed")
        broker.restart()  # memory-only: everything not consumed yet is gone
        restarted_at = time.monotonic()
        writer.join(60)
        try:
            wait_until(
                lambda: len(applied_counts(consumer_rt)) == total,
                60,
                "every event after the restart",
            )
        except AssertionError:
            missing = sorted(set(ids) - set(applied_counts(consumer_rt)))
            with producer_rt.db.transaction() as conn:
                rows = conn.execute(
                    "SELECT count(*) FILTER (WHERE published_at IS NULL), "
                    "count(DISTINCT published_incarnation), max(publish_count) FROM outbox"
                ).fetchone()
            raise AssertionError(
                f"{len(missing)} missing (e.g. {missing[:5]}); producer outbox unpublished, "
                f"incarnations, max publishes = {rows}"
            ) from None
        counts = applied_counts(consumer_rt)
        assert set(counts) == set(ids)
        assert max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
        assert producer_rt.producer.recreated >= 1, "the producer was not recreated"
        print(f"recovered all {total} events {time.monotonic() - restarted_at:.1f}s after restart")
    finally:
        broker.stop()


def test_relay_reports_backlog_and_settings_are_fast_joining(runtime_factory) -> None:
    rt = runtime_factory("backlog")
    assert KafkaSettings("h:1", "c").max_poll_interval_ms <= 10_000
    rt.start()
    with rt.db.transaction() as conn:
        outbox.publish(conn, LABELS_SUBMITTED.name, "i", events_pb2.LabelSubmitted())
    wait_until(
        lambda: rt.metrics.events_published.labels(topic=LABELS_SUBMITTED.name)._value.get() == 1,
        10,
        "the relay to publish",
    )
    wait_until(lambda: rt.metrics.outbox_backlog._value.get() == 0, 5, "backlog gauge at 0")


def test_bulk_announcements_wait_behind_every_other_event(runtime_factory) -> None:
    """An event enqueued after a large import's announcements goes out in the relay's
    next batch, not after them; the announcements then follow in their order, a few
    at a time (each carries hundreds of items)."""
    rt = runtime_factory("lanes")
    migrate(rt.config.pg_dsn, rt.config.schema, rt.migrations)
    rt.db.open()
    try:
        key = rt.config.service
        bulk = [make_event(ITEMS_IMPORTED.name, key, events_pb2.ItemsImported()) for _ in range(40)]
        urgent = make_event(LABELS_SUBMITTED.name, key, events_pb2.LabelSubmitted())
        with rt.db.transaction() as conn:
            outbox.enqueue_encoded(conn, [outbox.encode(e, bulk=True) for e in bulk])
            outbox.enqueue(conn, urgent)
            assert outbox.backlog(conn) == 41

        def published() -> list[str]:
            with rt.db.transaction() as conn:
                return [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT event_id FROM outbox WHERE published_at IS NOT NULL ORDER BY id"
                    )
                ]

        most = rt.relay.bulk_batch_size
        assert 1 < most < len(bulk)
        assert rt.relay.run_once() == 1 + most
        first = published()
        assert urgent.event_id in first
        assert first[:-1] == [e.event_id for e in bulk[:most]]
        with rt.relay.give_way_to.running():  # an import runs: one at a time
            assert rt.relay.run_once() == 1
        while rt.relay.run_once():
            pass
        assert published() == [e.event_id for e in bulk] + [urgent.event_id]
        with rt.db.transaction() as conn:
            assert outbox.backlog(conn) == 0
    finally:
        rt.db.close()
