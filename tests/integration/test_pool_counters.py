"""PoolStats reads counters that triggers keep in each change's transaction: after
imports, hand-outs, scores, lease expiry, consensus, reviews, concurrent writers and
deliberately failed (rolled-back) transactions they equal a full count of the rows."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from strata.common.events import make_event
from strata.common.predictions import prediction_events
from strata.common.topics import LABELS_CONSENSUS, REVIEWS_REQUESTED
from strata.sampler import store as sampler_store
from strata.v1 import common_pb2, events_pb2, sampler_pb2

from .conftest import Infra, produce, wait_until
from .test_sampler import Sampler, import_rows, publish_contract, text_rows

CLASSES = ["a", "b", "c"]


class Deliberate(Exception):
    """Raised inside a transaction to roll it back."""


def rolled_back(transaction: Any, work: Callable[[Any], object]) -> None:
    """Run `work` in a transaction that then fails: none of it may count."""
    with pytest.raises(Deliberate), transaction() as conn:
        work(conn)
        raise Deliberate


def pool_reference(conn: Any, project: str) -> dict[str, Any]:
    """PoolStats' figures, counted from the rows."""
    one = (project,)
    scores = [
        r[0]
        for r in conn.execute(
            "SELECT uncertainty FROM items WHERE project = %s AND state = 'pool' "
            "AND uncertainty IS NOT NULL",
            one,
        )
    ]
    versions = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT model_version FROM items WHERE project = %s "
            "AND model_version IS NOT NULL",
            one,
        )
    ]
    return {
        "states": dict(
            conn.execute(
                "SELECT state, count(*) FROM items WHERE project = %s GROUP BY 1", one
            ).fetchall()
        ),
        "duplicates": dict(
            conn.execute(
                "SELECT duplicate_kind, count(*) FROM items WHERE project = %s "
                "AND duplicate_kind IS NOT NULL GROUP BY 1",
                one,
            ).fetchall()
        ),
        "classes": dict(
            conn.execute(
                "SELECT predicted_class, count(*) FROM items WHERE project = %s "
                "AND state IN ('pool', 'inflight') AND predicted_class IS NOT NULL GROUP BY 1",
                one,
            ).fetchall()
        ),
        "scores": np.asarray(scores, dtype=float),
        # The newest is the last to reach the pool; the tests send versions in name order.
        "model_version": max(versions, key=lambda v: (len(v), v), default=""),
    }


def assert_pool_matches(stats: sampler_pb2.PoolStatsResponse, ref: dict[str, Any]) -> None:
    assert dict(stats.items_by_state) == ref["states"]
    assert stats.exact_duplicates == ref["duplicates"].get("exact", 0)
    assert stats.near_duplicates == ref["duplicates"].get("near", 0)
    # Bin i holds the scores in (bound[i-1], bound[i]]: numpy's count of the same rows.
    bounds = np.asarray(stats.score_distribution.upper_bounds)
    expected = np.bincount(
        np.searchsorted(bounds, ref["scores"], side="left"), minlength=len(bounds)
    )
    assert list(stats.score_distribution.counts) == expected.tolist()
    total = sum(ref["classes"].values())
    assert {c.class_label: c.score for c in stats.class_estimates} == pytest.approx(
        {CLASSES[c]: n / total for c, n in ref["classes"].items()}
    )
    assert stats.model_version == ref["model_version"]


def predictions(project: str, ids: list[str], version: str, rng: random.Random) -> list:  # type: ignore[type-arg]
    events = []
    for item_id in ids:
        p = np.asarray([rng.random() for _ in CLASSES])
        prediction = common_pb2.Prediction(
            item_id=item_id,
            project=project,
            model_version=version,
            classes=CLASSES,
            probabilities=(p / p.sum()).tolist(),
        )
        events.append(prediction_events(common_pb2.RoutingMetadata(), [prediction])[0])
    return events


def consensus_event(project: str, item_id: str, status: int, value: str = "", reason: int = 0):  # type: ignore[no-untyped-def]
    return make_event(
        LABELS_CONSENSUS,
        item_id,
        events_pb2.ConsensusUpdated(
            routing=common_pb2.RoutingMetadata(reason=reason),  # type: ignore[arg-type]
            consensus=common_pb2.ConsensusLabel(
                item_id=item_id, value=value, status=status, project=project
            ),
        ),
    )


def test_pool_counters_equal_a_full_count_after_a_mixed_workload(infra: Infra) -> None:
    sampler = Sampler(infra)
    db = sampler.runtime.db
    project = f"c{uuid.uuid4().hex[:8]}"
    rng = random.Random(11)
    try:
        publish_contract(infra, project)
        wait_until(lambda: sampler.has_contract(project), 60, "the sampler has the contract")
        texts = text_rows(240, rng)
        rows = [
            sampler_pb2.ImportRow(line=i + 1, external_id=f"t{i}", content={"text": t})
            for i, t in enumerate(texts)
        ]
        rows += [  # exact duplicates of the first ten, and gold
            sampler_pb2.ImportRow(line=300 + i, content={"text": texts[i].upper()})
            for i in range(10)
        ]
        rows += [
            sampler_pb2.ImportRow(line=400 + i, content={"text": f"gold {i}"}, gold_answer="a")
            for i in range(3)
        ]
        reply = import_rows(sampler.stub, project, rows, chunk=60)
        assert (reply.imported, reply.exact_duplicates, reply.gold) == (240, 10, 3)
        with db.transaction() as conn:
            ids = {
                ext: item
                for item, ext in conn.execute(
                    "SELECT item_id, external_id FROM items WHERE project = %s AND state = 'pool'",
                    (project,),
                )
            }
        canonical = [ids[f"t{i}"] for i in range(10)]

        # Two model versions score most of the pool, "v10" reaching it after "v9": the
        # newer, though not in text order (the newest is the last to reach the pool).
        scored = [ids[f"t{i}"] for i in range(200)]

        def scored_count() -> int:
            with db.transaction() as conn:
                row = conn.execute(
                    "SELECT count(*) FROM items WHERE project = %s AND uncertainty IS NOT NULL",
                    (project,),
                ).fetchone()
            return int(row[0]) if row else 0

        produce(infra.bootstrap, predictions(project, scored[:100], "v9", rng))
        wait_until(lambda: scored_count() == 100, 30, "v9's predictions applied")
        produce(infra.bootstrap, predictions(project, scored[100:], "v10", rng))
        wait_until(lambda: scored_count() == 200, 30, "v10's predictions applied")

        # Hand-outs: three long leases, one that runs out.
        handed: list[str] = []
        for size, lease in ((30, 3600), (30, 3600), (30, 3600), (20, 1)):
            batch = sampler.gateway.NextBatch(
                sampler_pb2.NextBatchRequest(
                    project=project, size=size, requester="gw", lease_seconds=lease
                )
            )
            handed += [b.item.item_id for b in batch.items]
        long_leased = handed[:90]

        # Consensus (duplicates inherit it), expert reviews, a withdrawn label and decisions.
        accepted = canonical + long_leased[:15]
        waiting = [i for i in ids.values() if i not in handed and i not in canonical]
        reviewed = long_leased[15:25] + waiting[:2]
        events = [
            consensus_event(project, i, common_pb2.CONSENSUS_STATUS_ACCEPTED, "a") for i in accepted
        ]
        events += [
            consensus_event(
                project,
                i,
                common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW,
                "a",
                common_pb2.ROUTING_REASON_RELABEL,
            )
            for i in accepted[10:13]
        ]
        events += [
            consensus_event(project, i, common_pb2.CONSENSUS_STATUS_EXPERT, "b")
            for i in accepted[10:12] + reviewed[:4]
        ]
        produce(infra.bootstrap, events)
        produce(
            infra.bootstrap,
            [
                make_event(
                    REVIEWS_REQUESTED,
                    i,
                    events_pb2.ReviewRequested(
                        item_id=i, project=project, kind=events_pb2.REVIEW_KIND_EXPERT
                    ),
                )
                for i in reviewed
            ],
        )

        def settled() -> bool:
            states = [sampler.state(i) for i in accepted + reviewed]
            return states == ["labeled"] * 12 + ["review"] + ["labeled"] * 16 + ["review"] * 8

        wait_until(settled, 30, "consensus and reviews applied")
        with db.transaction() as conn:
            copies = conn.execute(
                "SELECT count(*) FROM items WHERE project = %s AND state = 'labeled' "
                "AND propagated_from IS NOT NULL",
                (project,),
            ).fetchone()
        assert copies is not None and copies[0] == 10

        # The short leases run out; the next hand-out returns them to the pool first.
        time.sleep(1.2)
        sampler.gateway.NextBatch(
            sampler_pb2.NextBatchRequest(project=project, size=5, requester="gw")
        )

        # Transactions that fail after changing items: nothing of them may count.
        pool_ids = [i for i in ids.values() if sampler.state(i) == "pool"]
        rolled_back(
            db.transaction,
            lambda conn: (
                sampler_store.hand_out(conn, pool_ids[:10], "gw", 60),
                sampler_store.mark_labeled(conn, {i: "c" for i in pool_ids[10:20]}),
                sampler_store.await_review(conn, pool_ids[20:25]),
            ),
        )
        rolled_back(
            db.transaction,
            lambda conn: conn.execute("DELETE FROM items WHERE project = %s", (project,)),
        )
        fresh = sampler_store.NewItem(
            item_id=uuid.uuid4().hex,
            project=project,
            external_id="",
            content=b"x",
            metadata={},
            content_hash=uuid.uuid4().hex,
            state="pool",
            canonical_item_id=None,
            duplicate_kind=None,
            similarity=None,
            gold_answer=None,
            signature=None,
            vector=None,
            thumbnail=None,
        )
        with pytest.raises(Exception, match="duplicate key"), db.transaction() as conn:
            # An import chunk whose second row repeats the first one's id.
            sampler_store.insert_items(conn, [fresh, fresh], 1)

        # Concurrent writers, each on its own items, half of them failing: the counters
        # they share are never waited on, and what failed is not counted.
        slices = [pool_ids[i::4] for i in range(4)]
        failures: list[BaseException] = []

        def one_round(conn: Any, local: random.Random, mine: list[str], version: str) -> None:
            rescored = [
                sampler_store.Scored(
                    i, version, [0.5, 0.3, 0.2], None, local.randrange(3), local.random()
                )
                for i in local.sample(mine, 8)
            ]
            sampler_store.save_scores(conn, rescored)
            sampler_store.hand_out(conn, local.sample(mine, 2), "gw", 3600)
            sampler_store.await_review(conn, local.sample(mine, 1))
            if local.random() < 0.5:
                raise Deliberate

        def writer(mine: list[str], seed: int) -> None:
            local = random.Random(seed)
            try:
                for n in range(12):
                    # Versions older than v10: the newest stays one that some row still has.
                    with contextlib.suppress(Deliberate), db.transaction() as conn:
                        one_round(conn, local, mine, f"v{n % 9}")
            except BaseException as exc:  # reported by the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(s, n)) for n, s in enumerate(slices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures

        # The RPC answers the full count, and so does a read of the counters and the rows
        # in one snapshot.
        with db.transaction() as conn:
            ref = pool_reference(conn, project)
            shards = conn.execute(
                "SELECT count(DISTINCT shard) FROM pool_counters WHERE project = %s", (project,)
            ).fetchone()
        assert ref["states"]["review"] > 8 and ref["states"]["inflight"] > 0
        assert shards is not None and shards[0] > 1
        stats = sampler.stub.PoolStats(sampler_pb2.PoolStatsRequest(project=project))
        assert_pool_matches(stats, ref)
        counts = sampler.stub.PoolStats(
            sampler_pb2.PoolStatsRequest(project=project, counts_only=True)
        )
        assert dict(counts.items_by_state) == ref["states"]
    finally:
        sampler.stop()
