"""The sampler against real Postgres, the real broker and a real gRPC port."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from PIL import Image
from strata.common.channels import with_metadata
from strata.common.events import make_event
from strata.common.predictions import prediction_events
from strata.common.topics import (
    CONTRACTS,
    ITEMS_IMPORTED,
    LABELS_CONSENSUS,
    TRAINING_REQUESTED,
)
from strata.sampler.__main__ import build
from strata.sampler.config import SamplerConfig
from strata.v1 import common_pb2, events_pb2, sampler_pb2, sampler_pb2_grpc

from tests import pki
from tests.pictures import picture, png_of, reencoded
from tests.pki import as_service, client_channel

from .conftest import Infra, produce, read_topic, service_config, unique_service, wait_until
from .gateway_support import gateway_settings, start_gateway

Code = grpc.StatusCode
VOCAB = [f"w{i}" for i in range(3000)]


class Sampler:
    """A real sampler beside a real gateway (which checks people's tokens). `stub` calls
    as the gateway's bootstrap admin; `gateway` calls NextBatch as the gateway service."""

    def __init__(self, infra: Infra, service: str | None = None) -> None:
        self.gw = start_gateway(service_config(infra, "gateway"), gateway_settings(""))
        gateway_address = f"127.0.0.1:{self.gw.runtime.endpoints.grpc_port}"  # type: ignore[union-attr]
        self.runtime = build(
            service_config(infra, "sampler", **({"service": service} if service else {})),
            SamplerConfig(gateway_address=gateway_address),
        )
        address = f"127.0.0.1:{self.runtime.start().grpc_port}"
        self.channel = with_metadata(client_channel(address), self.gw.admin)
        self.stub = sampler_pb2_grpc.SamplerStub(self.channel)
        self.service_channel = as_service(address, "gateway")
        self.gateway = sampler_pb2_grpc.SamplerStub(self.service_channel)

    def stop(self) -> None:
        self.channel.close()
        self.service_channel.close()
        self.runtime.stop(grace_s=1.0)
        self.gw.channel.close()
        self.gw.runtime.stop(grace_s=1.0)

    def state(self, item_id: str) -> str | None:
        with self.runtime.db.transaction() as conn:
            row = conn.execute("SELECT state FROM items WHERE item_id = %s", (item_id,)).fetchone()
        return row[0] if row else None

    def has_contract(self, project: str) -> bool:
        with self.runtime.db.transaction() as conn:
            row = conn.execute("SELECT 1 FROM contracts WHERE project = %s", (project,)).fetchone()
        return row is not None


@pytest.fixture
def sampler(infra: Infra) -> Iterator[Sampler]:
    s = Sampler(infra)
    yield s
    s.stop()


def publish_contract(
    infra: Infra, project: str, retrain_every: int = 0, strategy: str = "margin"
) -> None:
    contract = common_pb2.LabelingContract(
        project=project,
        version="v1",
        classes=[common_pb2.ClassDefinition(name=c) for c in ("a", "b", "c")],
        active_learning=common_pb2.ActiveLearningTrigger(
            retrain_every=retrain_every, strategy=strategy
        ),
    )
    contract.loaded_at.GetCurrentTime()
    produce(
        infra.bootstrap,
        [make_event(CONTRACTS, project, events_pb2.ContractLoaded(contract=contract))],
    )


def text_rows(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(15, 25))) for _ in range(n)]


def decide(infra: Infra, consensus: common_pb2.ConsensusLabel, copies: int) -> list:  # type: ignore[type-arg]
    """Publish `consensus` for its item; returns the `copies` labels the sampler then
    propagates from it with the same value."""
    produce(
        infra.bootstrap,
        [
            make_event(
                LABELS_CONSENSUS,
                consensus.item_id,
                events_pb2.ConsensusUpdated(consensus=consensus),
            )
        ],
    )
    return read_topic(
        infra.bootstrap,
        LABELS_CONSENSUS,
        lambda m: (
            m.consensus.propagated_from_item_id == consensus.item_id
            and m.consensus.value == consensus.value
        ),
        copies,
    )


def import_rows(stub, project: str, rows: list[sampler_pb2.ImportRow], chunk: int = 500):  # type: ignore[no-untyped-def]
    return stub.ImportItems(
        iter(
            sampler_pb2.ImportItemsRequest(project=project, rows=rows[i : i + chunk])
            for i in range(0, len(rows), chunk)
        )
    )


def test_import_finds_exact_and_near_duplicates_and_reports_bad_rows(sampler: Sampler) -> None:
    project = f"s{uuid.uuid4().hex[:8]}"
    rng = random.Random(5)
    unique = text_rows(9000, rng)
    rows, truth = [], []  # truth: True for an injected duplicate
    for text in unique:
        rows.append(text)
        truth.append(False)
    for text in rng.sample(unique, 500):
        rows.append("  " + text.upper() + " ")  # exact after normalisation
        truth.append(True)
    for text in rng.sample(unique, 500):
        rows.append(text + " " + rng.choice(VOCAB))  # one more word: near-duplicate
        truth.append(True)
    order = list(range(len(rows)))
    rng.shuffle(order)
    # A duplicate must come after its original to be "the duplicate": originals first.
    order = [i for i in order if not truth[i]] + [i for i in order if truth[i]]
    request_rows = [
        sampler_pb2.ImportRow(
            line=line, external_id=f"r{i}", content=common_pb2.ItemContent(text=rows[i])
        )
        for line, i in enumerate(order, start=1)
    ]
    request_rows.append(sampler_pb2.ImportRow(line=len(order) + 1))  # no content
    request_rows.append(
        sampler_pb2.ImportRow(line=len(order) + 2, content=common_pb2.ItemContent(text="   "))
    )
    reply = import_rows(sampler.stub, project, request_rows)
    assert reply.received == 10_002
    with sampler.runtime.db.transaction() as conn:
        counted = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass"
        ).fetchone()
    assert counted == (10_000,), "a bulk import brings the planner's statistics up to date"
    assert [(e.line, e.message) for e in reply.errors] == [
        (10_001, "no content: give text, features or an image"),
        (10_002, "text is empty"),
    ]
    with sampler.runtime.db.transaction() as conn:
        flagged = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT external_id, duplicate_kind FROM items WHERE project = %s", (project,)
            )
        }
    predicted = [flagged[f"r{i}"] is not None for i in order]
    actual = [truth[i] for i in order]
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    precision = tp / max(1, sum(predicted))
    recall = tp / sum(actual)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    assert reply.exact_duplicates == 500
    assert reply.exact_duplicates + reply.near_duplicates == sum(predicted)
    stats = sampler.stub.PoolStats(sampler_pb2.PoolStatsRequest(project=project))
    assert stats.items_by_state["pool"] == reply.imported
    assert stats.exact_duplicates == 500
    # A page that polls asks for the counts alone, and gets the same counts.
    counts = sampler.stub.PoolStats(sampler_pb2.PoolStatsRequest(project=project, counts_only=True))
    assert counts.items_by_state == stats.items_by_state and not counts.exact_duplicates


def vector_rows(vectors: np.ndarray) -> list[sampler_pb2.ImportRow]:  # type: ignore[type-arg]
    return [
        sampler_pb2.ImportRow(
            line=i + 1,
            external_id=f"x{i}",
            content=common_pb2.ItemContent(features=common_pb2.FeatureVector(values=v.tolist())),
        )
        for i, v in enumerate(vectors)
    ]


def score_pool(
    infra: Infra,
    sampler: Sampler,
    project: str,
    ids: dict[str, str],
    vectors: np.ndarray,  # type: ignore[type-arg]
    uncertain: set[str],
    spot: set[str],
) -> None:
    """Model m1 arrives: flat predictions for `uncertain`, confident ones for the other
    `x<n>` items, and `spot` confident but drawn from auto-accept for a human spot check.
    Returns when the sampler has applied every one."""
    events = []
    for ext, item_id in ids.items():
        if not ext.startswith("x"):
            continue
        prediction = common_pb2.Prediction(
            item_id=item_id,
            project=project,
            model_version="m1",
            classes=["a", "b", "c"],
            probabilities=[0.34, 0.33, 0.33] if item_id in uncertain else [0.98, 0.01, 0.01],
            embedding=vectors[int(ext[1:])].tolist(),
            spot_check=item_id in spot,
        )
        events.append(prediction_events(common_pb2.RoutingMetadata(), [prediction])[0])
    produce(infra.bootstrap, events)

    def scored() -> bool:
        with sampler.runtime.db.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) FROM items WHERE project = %s AND uncertainty IS NOT NULL",
                (project,),
            ).fetchone()
        return bool(row and row[0] == len(events))

    wait_until(scored, 30, "predictions applied")


def test_cold_start_then_predictions_drive_the_ranking_and_state_survives_restart(
    infra: Infra,
) -> None:
    service = unique_service("sampler")
    sampler = Sampler(infra, service)
    project = f"s{uuid.uuid4().hex[:8]}"
    publish_contract(infra, project, retrain_every=5)
    # A new consumer group reads the session's whole contracts topic, poison included.
    wait_until(lambda: sampler.has_contract(project), 60, "the sampler has the contract")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    rows = vector_rows(vectors)
    rows.append(
        sampler_pb2.ImportRow(
            line=301,
            content=common_pb2.ItemContent(text="a gold example"),
            gold_answer="a",
        )
    )
    reply = import_rows(sampler.stub, project, rows)
    assert (reply.imported, reply.gold) == (300, 1)
    imported = read_topic(infra.bootstrap, ITEMS_IMPORTED, lambda m: m.item.project == project, 301)
    assert sum(1 for m in imported if m.gold_answer == "a") == 1
    ids = {m.item.external_id: m.item.item_id for m in imported}

    cold = sampler.gateway.NextBatch(
        sampler_pb2.NextBatchRequest(project=project, size=10, requester="gw-1")
    )
    assert cold.cold_start and len(cold.items) == 10
    # What is left to hand out, gold not counted: what a gateway keeps its queue a
    # share of.
    assert cold.HasField("pool_left") and cold.pool_left == 290
    assert {i.routing.reason for i in cold.items} == {common_pb2.ROUTING_REASON_DIVERSITY}
    handed = {i.item.item_id for i in cold.items}
    assert not handed & {m.item.item_id for m in imported if m.gold_answer}

    # A model arrives: 20 items are uncertain, the rest confident.
    uncertain = {ids[f"x{i}"] for i in range(100, 120)}
    spot = set([ids[f"x{i}"] for i in range(200, 300) if ids[f"x{i}"] not in handed][:2])
    score_pool(infra, sampler, project, ids, vectors, uncertain, spot)
    batch = sampler.gateway.NextBatch(
        sampler_pb2.NextBatchRequest(project=project, size=20, requester="gw-1")
    )
    assert not batch.cold_start and batch.model_version == "m1"
    got = [i.item.item_id for i in batch.items]
    reasons = [i.routing.reason for i in batch.items]
    assert len(got) == 20 and not set(got) & handed and batch.pool_left == 270
    picked_uncertain = [g for g, r in zip(got, reasons, strict=True) if g in uncertain]
    # Spot checks first, then the uncertain ones; the exploration share is random.
    assert set(got[:2]) == spot
    assert all(i.routing.attributes["spot_check"] == "true" for i in batch.items[:2])
    assert len(picked_uncertain) >= 16
    assert reasons.count(common_pb2.ROUTING_REASON_RANDOM_QA) == 4
    assert all(i.routing.score > 0 for i in batch.items[:17])
    assert batch.items[0].routing.attributes["strategy"] == "margin"
    # Ranked by the newest model: no version behind.
    assert {i.routing.attributes["versions_behind"] for i in batch.items} == {"0"}

    # Restart: a new process on the same schema resumes where the old one was.
    before = sampler.stub.PoolStats(sampler_pb2.PoolStatsRequest(project=project))
    sampler.stop()
    sampler = Sampler(infra, service)
    try:
        after = sampler.stub.PoolStats(sampler_pb2.PoolStatsRequest(project=project))
        assert dict(after.items_by_state) == dict(before.items_by_state)
        assert after.items_by_state["inflight"] == 30
        again = sampler.gateway.NextBatch(
            sampler_pb2.NextBatchRequest(project=project, size=50, requester="gw-2")
        )
        assert not {i.item.item_id for i in again.items} & (handed | set(got))

        # Consensus takes items out of the pool; after retrain_every of them, training is asked.
        decided = got[:5]
        consensus = []
        for item_id in decided:
            c = common_pb2.ConsensusLabel(
                item_id=item_id,
                value="b",
                status=common_pb2.CONSENSUS_STATUS_ACCEPTED,
                project=project,
            )
            consensus.append(
                make_event(LABELS_CONSENSUS, item_id, events_pb2.ConsensusUpdated(consensus=c))
            )
        produce(infra.bootstrap, consensus)
        wait_until(lambda: all(sampler.state(i) == "labeled" for i in decided), 30, "items labeled")
        requests = read_topic(
            infra.bootstrap, TRAINING_REQUESTED, lambda m: m.project == project, 1
        )
        assert [r.consensus_labels for r in requests] == [5]
    finally:
        sampler.stop()


def test_the_random_strategy_hands_out_a_uniform_sample_whatever_the_model_says(
    sampler: Sampler, infra: Infra
) -> None:
    """The baseline's strategy: random at cold start and after a model, the uncertain
    items no earlier than the rest; spot checks still go first."""
    project = f"r{uuid.uuid4().hex[:8]}"
    publish_contract(infra, project, strategy="random")
    wait_until(lambda: sampler.has_contract(project), 60, "the sampler has the contract")
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    rows = vector_rows(vectors)
    assert import_rows(sampler.stub, project, rows).imported == 300
    imported = read_topic(infra.bootstrap, ITEMS_IMPORTED, lambda m: m.item.project == project, 300)
    ids = {m.item.external_id: m.item.item_id for m in imported}

    cold = sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(project=project, size=10))
    assert cold.cold_start and len(cold.items) == 10
    assert {i.routing.reason for i in cold.items} == {common_pb2.ROUTING_REASON_RANDOM_QA}
    handed = {i.item.item_id for i in cold.items}

    uncertain = {ids[f"x{i}"] for i in range(100, 120)} - handed
    spot = set(sorted(ids[f"x{i}"] for i in range(200, 300) if ids[f"x{i}"] not in handed)[:2])
    score_pool(infra, sampler, project, ids, vectors, uncertain, spot)
    order: list[str] = []
    first = True
    while True:
        batch = sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(project=project, size=20))
        if not batch.items:
            break
        assert not batch.cold_start and batch.model_version == "m1"
        if first:
            assert {i.item.item_id for i in batch.items[:2]} == spot
            first = False
        reasons = {i.routing.reason for i in batch.items}
        assert reasons == {common_pb2.ROUTING_REASON_RANDOM_QA}
        assert all(i.routing.attributes["strategy"] == "random" for i in batch.items)
        order += [i.item.item_id for i in batch.items]
    assert len(order) == len(set(order)) == 290 and not set(order) & handed
    # Margin would hand the uncertain items out first (mean position about 10); uniform
    # draws put them anywhere (mean about 145, standard deviation about 19).
    mean_position = sum(order.index(u) for u in uncertain) / len(uncertain)
    assert mean_position > 60, mean_position


def test_duplicates_inherit_their_canonical_items_label(sampler: Sampler, infra: Infra) -> None:
    project = f"s{uuid.uuid4().hex[:8]}"
    text = "the lorry carried forty crates of oranges across the mountain pass at night"
    reply = import_rows(
        sampler.stub,
        project,
        [
            sampler_pb2.ImportRow(
                line=1, external_id="orig", content=common_pb2.ItemContent(text=text)
            ),
            sampler_pb2.ImportRow(
                line=2, external_id="copy", content=common_pb2.ItemContent(text=text.upper())
            ),
            sampler_pb2.ImportRow(
                line=3, external_id="near", content=common_pb2.ItemContent(text=text + " again")
            ),
        ],
    )
    assert (reply.imported, reply.exact_duplicates, reply.near_duplicates) == (1, 1, 1)
    with sampler.runtime.db.transaction() as conn:
        ids = dict(
            conn.execute(
                "SELECT external_id, item_id FROM items WHERE project = %s", (project,)
            ).fetchall()
        )
    batch = sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(project=project, size=10))
    assert [i.item.item_id for i in batch.items] == [ids["orig"]]  # duplicates are never sent
    # Every item is announced; a duplicate names its canonical item (training trains on
    # its propagated label, quality exports it).
    announced = {
        m.item.external_id: m.item
        for m in read_topic(infra.bootstrap, ITEMS_IMPORTED, lambda m: m.item.project == project, 3)
    }
    assert {k: v.canonical_item_id for k, v in announced.items()} == {
        "orig": "",
        "copy": ids["orig"],
        "near": ids["orig"],
    }
    assert announced["near"].content.text == text + " again"
    assert announced["copy"].item_id == ids["copy"] and announced["copy"].content_hash
    c = common_pb2.ConsensusLabel(
        item_id=ids["orig"],
        value="fruit",
        consensus_score=0.8,
        status=common_pb2.CONSENSUS_STATUS_EXPERT,
        project=project,
        ontology_version="v1",
        votes=[
            common_pb2.Vote(annotator_id=a, value="fruit", weight=0.7, label_id=f"l-{a}")
            for a in ("ann1", "ann2")
        ],
    )
    propagated = decide(infra, c, 2)
    assert sorted(m.consensus.item_id for m in propagated) == sorted([ids["copy"], ids["near"]])
    # A copy carries its original's decision whole: training governs it the same way and
    # the ledger attributes it to the same people.
    for m in propagated:
        got = m.consensus
        assert got.method == common_pb2.CONSENSUS_METHOD_PROPAGATED
        assert got.propagated_from_item_id == ids["orig"]
        assert (got.value, got.consensus_score, got.status, got.ontology_version) == (
            "fruit",
            0.8,
            common_pb2.CONSENSUS_STATUS_EXPERT,
            "v1",
        )
        assert list(got.votes) == list(c.votes)
    wait_until(lambda: sampler.state(ids["near"]) == "labeled", 20, "duplicate labeled")

    # An expert later decides the canonical item differently: the copies follow.
    c.value = "vegetable"
    changed = decide(infra, c, 2)
    assert sorted(m.consensus.item_id for m in changed) == sorted([ids["copy"], ids["near"]])

    def values() -> dict[str, str]:
        with sampler.runtime.db.transaction() as conn:
            return dict(
                conn.execute(
                    "SELECT external_id, consensus_value FROM items WHERE project = %s",
                    (project,),
                ).fetchall()
            )

    wait_until(lambda: set(values().values()) == {"vegetable"}, 20, "copies relabeled")

    # A model's auto-accepted label stays marked as one on the copies it reaches.
    other = "a heron stood in the shallow river waiting for the silver fish to come close"
    import_rows(
        sampler.stub,
        project,
        [
            sampler_pb2.ImportRow(
                line=1, external_id="o2", content=common_pb2.ItemContent(text=other)
            ),
            sampler_pb2.ImportRow(
                line=2, external_id="c2", content=common_pb2.ItemContent(text=other.upper())
            ),
        ],
    )
    with sampler.runtime.db.transaction() as conn:
        ids = dict(
            conn.execute(
                "SELECT external_id, item_id FROM items WHERE project = %s", (project,)
            ).fetchall()
        )
    model = common_pb2.ConsensusLabel(
        item_id=ids["o2"],
        value="bird",
        consensus_score=0.97,
        status=common_pb2.CONSENSUS_STATUS_ACCEPTED,
        method=common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT,
        project=project,
        votes=[
            common_pb2.Vote(
                annotator_id="model:m1", value="bird", source=common_pb2.LABEL_SOURCE_MODEL
            )
        ],
    )
    [copy] = decide(infra, model, 1)
    assert copy.consensus.item_id == ids["c2"] and copy.routing.attributes["auto_accept"] == "model"
    assert [v.source for v in copy.consensus.votes] == [common_pb2.LABEL_SOURCE_MODEL]
    assert copy.consensus.consensus_score == pytest.approx(0.97)


def test_an_item_withdrawn_for_review_waits_for_the_reviewer_not_the_crowd(
    sampler: Sampler, infra: Infra
) -> None:
    """Quality withdraws an accepted label for review (RELABEL): the item loses its value,
    waits in review and is not handed out again (quality waits for the reviewer and would
    only record crowd labels); the reviewer's decision labels it again."""
    project = f"s{uuid.uuid4().hex[:8]}"
    rows = [
        sampler_pb2.ImportRow(
            line=i + 1, external_id=f"x{i}", content=common_pb2.ItemContent(text=text)
        )
        for i, text in enumerate(text_rows(6, random.Random(5)))
    ]
    assert import_rows(sampler.stub, project, rows).imported == 6
    first = sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(project=project, size=1))
    item = first.items[0].item.item_id

    def consensus(status: int, value: str, reason: int = 0) -> None:
        produce(
            infra.bootstrap,
            [
                make_event(
                    LABELS_CONSENSUS,
                    item,
                    events_pb2.ConsensusUpdated(
                        routing=common_pb2.RoutingMetadata(reason=reason),
                        consensus=common_pb2.ConsensusLabel(
                            item_id=item, value=value, status=status, project=project
                        ),
                    ),
                )
            ],
        )

    def stored() -> tuple[str, str | None]:
        with sampler.runtime.db.transaction() as conn:
            return conn.execute(
                "SELECT state, consensus_value FROM items WHERE item_id = %s", (item,)
            ).fetchone()

    consensus(common_pb2.CONSENSUS_STATUS_ACCEPTED, "cat")
    wait_until(lambda: stored() == ("labeled", "cat"), 20, "the item labeled")
    consensus(common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW, "cat", common_pb2.ROUTING_REASON_RELABEL)
    wait_until(lambda: stored() == ("review", None), 20, "the label withdrawn")
    rest = sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(project=project, size=10))
    assert len(rest.items) == 5 and item not in {i.item.item_id for i in rest.items}
    consensus(common_pb2.CONSENSUS_STATUS_EXPERT, "dog")
    wait_until(lambda: stored() == ("labeled", "dog"), 20, "the reviewer's decision")


def test_images_are_deduplicated_exactly_and_near_across_replicas(
    sampler: Sampler, infra: Infra
) -> None:
    """One replica imports pictures; another, with an empty index of its own, imports
    rescaled and re-encoded copies, byte-for-byte copies, a flat image and a broken PNG:
    it links each copy to its original through what the first stored."""
    project = f"s{uuid.uuid4().hex[:8]}"

    def image_row(line: int, external_id: str, png: bytes) -> sampler_pb2.ImportRow:
        return sampler_pb2.ImportRow(
            line=line,
            external_id=external_id,
            content=common_pb2.ItemContent(image=common_pb2.Image(png=png)),
        )

    originals = [png_of(picture(seed)) for seed in range(60)]
    first = import_rows(
        sampler.stub, project, [image_row(i + 1, f"o{i}", p) for i, p in enumerate(originals)]
    )
    assert (first.imported, first.near_duplicates) == (60, 0)

    other = Sampler(infra, sampler.runtime.config.service)  # same schema, fresh index
    try:
        rows = []
        for i in range(20):
            pixels = picture(i)
            smaller = np.asarray(Image.fromarray(pixels).resize((40, 30), Image.Resampling.LANCZOS))
            rows.append(image_row(len(rows) + 1, f"small{i}", png_of(smaller)))
            rows.append(image_row(len(rows) + 1, f"jpeg{i}", png_of(reencoded(pixels))))
        for i in range(20, 30):
            rows.append(image_row(len(rows) + 1, f"same{i}", originals[i]))
        for seed in range(100, 110):
            rows.append(image_row(len(rows) + 1, f"new{seed}", png_of(picture(seed))))
        rows.append(image_row(len(rows) + 1, "flat", png_of(np.full((9, 9), 7, np.uint8))))
        rows.append(image_row(len(rows) + 1, "broken", b"\x89PNG\r\n\x1a\n" + b"\0" * 40))
        reply = import_rows(other.stub, project, rows, chunk=7)
    finally:
        other.stop()
    assert (reply.near_duplicates, reply.exact_duplicates, reply.imported) == (40, 10, 11)
    assert [(e.line, e.message.split(":")[0]) for e in reply.errors] == [
        (len(rows), "image does not decode")
    ]
    with sampler.runtime.db.transaction() as conn:
        found = dict(
            conn.execute(
                "SELECT d.external_id, c.external_id FROM items d "
                "JOIN items c ON c.item_id = d.canonical_item_id WHERE d.project = %s",
                (project,),
            ).fetchall()
        )
    expected = {f"{kind}{i}": f"o{i}" for kind in ("small", "jpeg") for i in range(20)}
    expected.update({f"same{i}": f"o{i}" for i in range(20, 30)})
    assert found == expected


def test_bad_requests_get_clear_errors(sampler: Sampler) -> None:
    with pytest.raises(grpc.RpcError) as err:
        sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(project="p", size=0))
    assert err.value.code() == Code.INVALID_ARGUMENT and "size" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(size=5))
    assert err.value.code() == Code.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        import_rows(
            sampler.stub,
            "",
            [sampler_pb2.ImportRow(line=1, content=common_pb2.ItemContent(text="x"))],
        )
    assert err.value.code() == Code.INVALID_ARGUMENT
    nan_row = sampler_pb2.ImportRow(
        line=7,
        content=common_pb2.ItemContent(
            features=common_pb2.FeatureVector(values=[1.0, float("nan")])
        ),
    )
    reply = import_rows(sampler.stub, "p-bad", [nan_row])
    assert [(e.line, e.message) for e in reply.errors] == [(7, "features contain NaN or infinity")]
    empty = sampler.gateway.NextBatch(sampler_pb2.NextBatchRequest(project="nobody", size=5))
    assert list(empty.items) == []


def test_strata_import_streams_a_file_and_reports_bad_lines(
    sampler: Sampler, tmp_path, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from strata.cli.main import main

    address = f"127.0.0.1:{sampler.runtime.endpoints.grpc_port}"  # type: ignore[union-attr]
    # Signed in as the gateway's admin, over the CLI's client certificate.
    monkeypatch.setenv("STRATA_HOME", str(tmp_path / "no-stack"))
    monkeypatch.setenv("STRATA_TOKEN", sampler.gw.admin_token)
    for key, value in pki.environ("cli").items():
        monkeypatch.setenv(key, value)
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(
        '{"id": "a", "text": "first item text here"}\n'
        "not json\n"
        '{"id": "b", "features": [1, 2, 3], "metadata": {"source": "x"}}\n'
        '{"id": "g", "text": "a gold one", "gold_answer": "cat"}\n'
        '{"id": "c"}\n'
    )
    project = f"s{uuid.uuid4().hex[:8]}"
    code = main(["import", str(jsonl), "--project", project, "--sampler", address])
    out = capsys.readouterr().out
    assert code == 3
    assert "2 imported, 1 gold, 0 exact and 0 near duplicates, 2 rejected" in out
    assert "line 2:" in out and "line 5: needs text, features, image or image_base64" in out
    csv_file = tmp_path / "items.csv"
    csv_file.write_text("id,f0,f1,meta.split\nr1,0.5,1.5,train\nr2,oops,1,train\n")
    code = main(["import", str(csv_file), "--project", project, "--sampler", address])
    out = capsys.readouterr().out
    assert "1 imported" in out and "line 3:" in out
