"""A hand-out at a large pool reads its batch, not the pool; it says how stale its ranking is.

The pool is written straight into a sampler schema (generate_series): 200,000 items of
one project beside 50,000 of another, with the statistics a bulk load leaves (taken at
1,000 items, autovacuum off for the table). Every statement `next_batch` runs on
`items` is planned as it runs (EXPLAIN ANALYZE for reads, EXPLAIN for writes) and no
plan may scan or sort the pool.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from strata.common import pgarrays
from strata.common.db import load_migrations, migrate, package_migrations
from strata.sampler import handout, store
from strata.v1 import common_pb2

from .conftest import Infra, unique_service

POOL = 200_000
OTHER = 50_000
SIZE = 16
CONTENT = common_pb2.ItemContent(text="an item").SerializeToString()

_INSERT = (
    "INSERT INTO items (item_id, project, content, content_hash, state, import_seq) "
    "SELECT md5(%s || g), %s, %s, md5(%s || g), 'pool', 1 "
    "FROM generate_series(%s::int, %s::int) AS g"
)
_SCORE = (
    "UPDATE items SET model_version = %s, probabilities = ARRAY[0.5, 0.3, 0.2]::real[], "
    "predicted_class = (hashtext(item_id) & 3) %% 3, uncertainty = random(), "
    "spot_check = random() < 0.001, "
    "embedding = ARRAY(SELECT random()::real FROM generate_series(1, 8 + 0 * length(item_id))) "
    "WHERE project = %s"
)
# A sequential scan reads the pool whatever it returns; a hand-out never has one. A sort
# is allowed in a read only over the rows it returns (a random point near the end of the
# id order leaves few, and a bitmap scan and a sort of those is the planner's right
# choice), never in a write; a write finds its rows by a key (the batch's own ids).
NEVER = {"Seq Scan"}
NOT_IN_WRITES = {"Sort", "Incremental Sort"}


class PlanRecorder:
    """A connection that plans each statement on `items` as it runs it: reads under
    EXPLAIN ANALYZE (what they actually read), writes under EXPLAIN (an ANALYZE would
    apply them twice)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.plans: list[tuple[str, dict[str, Any]]] = []

    def _plan(self, query: Any, params: Any) -> None:
        text = str(query)
        if re.search(r"\bitems\b", text):
            read = text.lstrip().upper().startswith("SELECT")
            options = "ANALYZE, BUFFERS, FORMAT JSON" if read else "FORMAT JSON"
            plan = self.conn.execute(f"EXPLAIN ({options}) {text}", params).fetchone()
            assert plan is not None
            self.plans.append((text, plan[0][0]["Plan"]))

    def execute(self, query: Any, params: Any = None) -> Any:
        self._plan(query, params)
        return self.conn.execute(query, params)

    def cursor(self, **options: Any) -> RecordingCursor:
        return RecordingCursor(self, self.conn.cursor(**options))


class RecordingCursor:
    """A cursor of the recorder's connection (the candidate reads use one of their own,
    `pgarrays.numpy_cursor`) whose statements are planned too."""

    def __init__(self, recorder: PlanRecorder, cursor: psycopg.Cursor[Any]) -> None:
        self.recorder = recorder
        self.cursor = cursor
        self.adapters = cursor.adapters

    def execute(self, query: Any, params: Any = None) -> Any:
        self.recorder._plan(query, params)
        return self.cursor.execute(query, params)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.fixture(scope="module")
def pool(infra: Infra) -> Iterator[tuple[psycopg.Connection[Any], str, str]]:
    """(connection, a project of POOL unscored items, one of OTHER scored items)."""
    schema = unique_service("handout")
    migrate(infra.pg_dsn, schema, load_migrations("sampler", package_migrations("strata.sampler")))
    project, other = f"big{uuid.uuid4().hex[:6]}", f"oth{uuid.uuid4().hex[:6]}"
    with psycopg.connect(infra.pg_dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("ALTER TABLE items SET (autovacuum_enabled = false)")
        conn.execute(_INSERT, (project, project, CONTENT, project, 1, 1_000))
        conn.execute("ANALYZE items")
        conn.execute(_INSERT, (project, project, CONTENT, project, 1_001, POOL))
        conn.execute(_INSERT, (other, other, CONTENT, other, 1, OTHER))
        conn.execute(_SCORE, ("m1", other))
        yield conn, project, other


def hand_out(
    conn: psycopg.Connection[Any], project: str, strategy: str = "margin"
) -> tuple[handout.Batch, list[tuple[str, dict[str, Any]]]]:
    recorder = PlanRecorder(conn)
    contract = common_pb2.LabelingContract(
        project=project,
        classes=[common_pb2.ClassDefinition(name=c) for c in "abc"],
        active_learning=common_pb2.ActiveLearningTrigger(strategy=strategy),
    )
    with conn.transaction():
        batch = handout.next_batch(
            recorder,  # type: ignore[arg-type]
            project,
            SIZE,
            "gw-test",
            3600,
            contract,
            batch_id=str(uuid.uuid4()),
            rng=random.Random(0),
            explore_fraction=0.1,
            boost_weight=1.0,
        )
    return batch, recorder.plans


def assert_reads_the_batch_only(plans: list[tuple[str, dict[str, Any]]]) -> None:
    used: dict[str, set[str]] = {"ranked": set(), "random": set()}
    for text, plan in plans:
        read = text.lstrip().startswith("SELECT")
        for node in nodes(plan):
            assert node["Node Type"] not in NEVER, (text, plan)
            assert read or node["Node Type"] not in NOT_IN_WRITES, (text, plan)
            if not read and node["Node Type"] == "Bitmap Index Scan":
                assert node["Index Name"] == "items_pkey", (text, plan)
            if read:
                # No step of a read handles more rows than the largest slice a hand-out
                # takes (the ranked one), and a scan keeps every row it reads.
                assert node["Actual Rows"] <= handout.RANKED_AT_LEAST, (text, plan)
                assert node.get("Rows Removed by Filter", 0) == 0, (text, plan)
        if read:
            # About a page per row returned, at most: never the pool's thousands.
            touched = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
            assert touched <= 4 * plan["Actual Rows"] + 100, (text, plan)
        kind = "ranked" if "uncertainty IS NOT NULL" in text else "random"
        if "ORDER BY" in text:
            used[kind] |= {n.get("Index Name", "") for n in nodes(plan)} - {""}
    assert used["random"] == {"items_pool_by_id"}, used
    assert used["ranked"] == {"items_ranked"}, used
    written = [t for t, _ in plans if t.lstrip().startswith("UPDATE")]
    assert len(written) == 2, written  # leases run out, the batch handed out


def test_a_hand_out_at_a_large_pool_reads_its_batch_not_the_pool(pool) -> None:
    conn, project, other = pool
    # Cold: nothing scored, statistics from when the pool was 1,000 items.
    batch, plans = hand_out(conn, project)
    assert batch.cold and len(batch.choices) == SIZE
    assert {c.reason for c in batch.choices} == {common_pb2.ROUTING_REASON_DIVERSITY}
    assert_reads_the_batch_only(plans)

    # A model scores the whole pool at once: the statistics still say nothing is scored.
    conn.execute(_SCORE, ("m1", project))
    store.note_model_versions(conn, [(project, "m1")])
    for strategy in ("margin", "random"):
        batch, plans = hand_out(conn, project, strategy)
        assert not batch.cold and len(batch.choices) == SIZE
        assert batch.model_version == "m1" and batch.versions_behind == 0
        assert_reads_the_batch_only(plans)

    # And so after the statistics are brought up to date, as an import does.
    with conn.transaction():
        assert store.refresh_statistics(conn, POOL)
    batch, plans = hand_out(conn, project)
    assert_reads_the_batch_only(plans)
    # The other project's items never come into it.
    leased = conn.execute(
        "SELECT count(*) FROM items WHERE project = %s AND state = 'inflight'", (other,)
    ).fetchone()
    assert leased == (0,)


def test_a_batch_says_how_many_model_versions_its_ranking_is_behind(pool) -> None:
    conn, _, _ = pool
    project = f"age{uuid.uuid4().hex[:6]}"
    conn.execute(_INSERT, (project, project, CONTENT, project, 1, 400))
    # m1 scored everything; m2 and m3 came after, and so far m3 re-scored a quarter of
    # the pool, all of it confidently: the most uncertain items are m1's.
    conn.execute(_SCORE, ("m1", project))
    for version in ("m1", "m2", "m3"):
        store.note_model_versions(conn, [(project, version)])
    conn.execute(
        "UPDATE items SET model_version = 'm3', uncertainty = uncertainty / 100 "
        "WHERE project = %s AND item_id IN (SELECT item_id FROM items WHERE project = %s "
        "ORDER BY item_id LIMIT 100)",
        (project, project),
    )
    batch, _ = hand_out(conn, project)
    assert batch.model_version == "m3"
    assert batch.versions_behind == 2  # m2 and m3 came after m1
    # Once m3 has scored the pool, its batches are current.
    conn.execute("UPDATE items SET model_version = 'm3' WHERE project = %s", (project,))
    batch, _ = hand_out(conn, project)
    assert (batch.model_version, batch.versions_behind) == ("m3", 0)
    # A version seen again keeps its place.
    store.note_model_versions(conn, [(project, "m1")])
    batch, _ = hand_out(conn, project)
    assert (batch.model_version, batch.versions_behind) == ("m3", 0)


def test_scores_go_in_whole_and_the_later_of_two_for_an_item_wins(pool) -> None:
    """Predictions reach the pool by binary COPY: probabilities and embeddings read back
    as the float32s written, an item scored twice in one batch keeps the later score,
    and a batch that fails leaves nothing behind for the next."""
    conn, _, _ = pool
    project = f"sc{uuid.uuid4().hex[:6]}"
    conn.execute(_INSERT, (project, project, CONTENT, project, 1, 3))
    ids = [r[0] for r in conn.execute(
        "SELECT item_id FROM items WHERE project = %s ORDER BY item_id", (project,)
    ).fetchall()]  # fmt: skip
    emb = np.linspace(-1, 1, 64, dtype=np.float32)
    scored = [
        store.Scored(ids[0], "m1", [0.7, 0.2, 0.1], emb, 0, 0.5, True),
        store.Scored(ids[1], "m1", [0.4, 0.6], None, 1, 0.2),
        store.Scored(ids[0], "m2", [0.1, 0.1, 0.8], emb * 2, 2, 0.9),  # later: wins
        store.Scored("not-in-the-pool", "m2", [0.5, 0.5], None, 0, 0.0),
    ]
    with conn.transaction():
        assert store.save_scores(conn, scored) == 2
    rows = {
        r[0]: r[1:]
        for r in pgarrays.numpy_cursor(conn).execute(
            "SELECT item_id, model_version, probabilities, embedding, predicted_class, "
            "uncertainty, spot_check FROM items WHERE project = %s",
            (project,),
        )
    }
    version, probs, embedding, predicted, uncertainty, spot = rows[ids[0]]
    assert (version, predicted, uncertainty, spot) == ("m2", 2, 0.9, False)
    assert probs.tolist() == np.float32([0.1, 0.1, 0.8]).tolist()
    assert embedding.tolist() == (emb * 2).tolist()
    assert rows[ids[1]][0] == "m1" and rows[ids[1]][2] is None
    assert rows[ids[2]][0] is None  # not scored
    # A batch whose transaction fails stores nothing, and the next starts clean.
    with pytest.raises(RuntimeError), conn.transaction():
        store.save_scores(conn, [store.Scored(ids[2], "m3", [0.5, 0.5], None, 0, 0.1)])
        raise RuntimeError("the consumer's batch failed")
    with conn.transaction():
        assert store.save_scores(conn, [store.Scored(ids[1], "m3", [0.5, 0.5], None, 0, 0.3)]) == 1
    versions = conn.execute(
        "SELECT item_id, model_version FROM items WHERE project = %s", (project,)
    ).fetchall()
    assert dict(versions) == {ids[0]: "m2", ids[1]: "m3", ids[2]: None}
