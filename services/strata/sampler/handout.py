"""Hand-out: choose a batch from the pool and lease it, in work proportional to the batch.

A batch reads two slices of the pool, each from an index in the order it wants, so
its cost does not grow with the pool: the ranked candidates (spot checks, then the
most uncertain scored items: `max(2000, 4 x size)` rows) and a random slice (`size`
rows; at a cold start or under the random strategy twenty times that, at most the
ranked slice's size).
`choose` ranks and spreads them (pure); `next_batch` does the reads and the lease.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from strata.sampler import store
from strata.sampler.strategies import class_boost, select_batch
from strata.v1 import common_pb2

# The ranked slice: enough scored items for k-center and the class boosts to choose from,
# at least 2,000 rows, four per item of a larger batch; a cold start's (or the random
# strategy's) random slice: twenty rows per item, at most the ranked slice. A batch of
# up to 100 reads what it always did; a larger one (the gateway asks for more under
# demand) costs the same per item instead of twenty rows and a k-center pass over them
# more for every item it adds.
RANKED_AT_LEAST = 2000
RANKED_PER_ITEM = 4
RANDOM_PER_ITEM = 20


def slices(size: int) -> tuple[int, int]:
    """(rows of the ranked slice, rows of a cold start's random slice) for a batch."""
    ranked = max(RANKED_AT_LEAST, RANKED_PER_ITEM * size)
    return ranked, min(RANDOM_PER_ITEM * size, ranked)


@dataclass(frozen=True)
class Choice:
    item_id: str
    score: float
    reason: common_pb2.RoutingReason
    spot_check: bool = False
    # The model version whose score put the item in the batch (None: drawn at random).
    model_version: str | None = None


def _stacked(arrays: Sequence[NDArray[np.float32] | None]) -> NDArray[np.float32] | None:
    """The candidates' embeddings (or vectors) as one matrix; None unless every one has
    some (k-center then has nothing to spread over)."""
    present = [a for a in arrays if a is not None and a.size]
    return np.stack(present) if present and len(present) == len(arrays) else None


def choose(
    candidates: Sequence[store.Candidate],
    explore: Sequence[store.Candidate],
    size: int,
    *,
    cold: bool,
    n_classes: int,
    confused: dict[int, float],
    rng: random.Random,
    explore_fraction: float = 0.1,
    boost_weight: float = 1.0,
    uniform: bool = False,
) -> list[Choice]:
    """Pick `size` items: diverse and uncertain (or diverse at cold start), plus exploration.

    `uniform` is the contract's `random` strategy, the baseline active learning is
    measured against: every item is drawn at random from `explore`, from the first
    batch on, with no model, boost or diversity in the choice. Auto-accept's spot
    checks still go first, whatever the strategy.
    """
    picked: list[Choice] = []
    taken: set[str] = set()
    if cold or uniform:
        main = size
    else:
        main = size - min(len(explore), max(0, round(size * explore_fraction)))
    if cold and not uniform:
        pool = [c for c in explore]
        emb = _stacked([c.vector for c in pool])
        scores = np.asarray([rng.random() for _ in pool])
        for i in select_batch(scores, emb, main):
            picked.append(Choice(pool[i].item_id, 0.0, common_pb2.ROUTING_REASON_DIVERSITY))
        return picked
    # Auto-accept's spot checks keep its precision honest: up to half of the batch.
    spot = [c for c in candidates if c.spot_check]
    for c in spot[: (main + 1) // 2]:
        picked.append(
            Choice(
                c.item_id,
                c.uncertainty or 0.0,
                common_pb2.ROUTING_REASON_RANDOM_QA,
                True,
                c.model_version,
            )
        )
        taken.add(c.item_id)
    scored = [c for c in candidates if c.item_id not in taken and c.uncertainty is not None]
    if scored and len(picked) < main and not uniform:
        unc = np.asarray([c.uncertainty for c in scored], dtype=float)
        predicted = np.asarray([c.predicted_class or 0 for c in scored], dtype=np.int64)
        rare = 1.0 + boost_weight * (
            class_boost(predicted, max(n_classes, int(predicted.max()) + 1)) - 1.0
        )
        depth = np.asarray([1.0 + boost_weight * confused.get(int(p), 0.0) for p in predicted])
        final = unc * rare * depth
        emb = _stacked([c.embedding for c in scored])
        for i in select_batch(final, emb, main - len(picked)):
            if depth[i] > 1.05 and depth[i] >= rare[i]:
                reason = common_pb2.ROUTING_REASON_DEPTH_FEEDBACK
            elif rare[i] > 1.25:
                reason = common_pb2.ROUTING_REASON_RARE_CLASS
            else:
                reason = common_pb2.ROUTING_REASON_UNCERTAINTY
            picked.append(
                Choice(scored[i].item_id, float(final[i]), reason, False, scored[i].model_version)
            )
            taken.add(scored[i].item_id)
    extra = [c for c in explore if c.item_id not in taken]
    rng.shuffle(extra)
    for c in extra[: size - len(picked)]:
        picked.append(
            Choice(
                c.item_id,
                float(c.uncertainty or 0.0),
                common_pb2.ROUTING_REASON_RANDOM_QA,
                c.spot_check,
            )
        )
    return picked


LeasedRow = tuple[str, str, bytes, dict[str, str], str, str]


@dataclass(frozen=True)
class Batch:
    """One hand-out: what was chosen and leased, and how fresh the ranking behind it was."""

    choices: list[Choice]
    leased: dict[str, LeasedRow]  # item -> (item, project, content, metadata, hash, external)
    cold: bool
    uniform: bool
    model_version: str  # the newest model that scored the pool ("" before any)
    versions_behind: int  # newer versions than the oldest that ranked an item of the batch
    pool_left: int  # the project's items still in the pool after this batch


def next_batch(
    conn: store.Conn,
    project: str,
    size: int,
    requester: str,
    lease_s: int,
    contract: common_pb2.LabelingContract | None,
    *,
    batch_id: str,
    rng: random.Random,
    explore_fraction: float,
    boost_weight: float,
) -> Batch:
    """Choose `size` items of `project` and lease them to `requester` for `lease_s`,
    inside the caller's transaction."""
    # One hand-out per project at a time: no item goes to two callers.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('strata-sampler-batch:' || %s))", (project,)
    )
    store.expire_leases(conn, project)
    classes = [c.name for c in contract.classes] if contract else []
    # The random strategy needs only spot checks from the ranking (they come first in it),
    # and a wider random slice to draw from.
    uniform = contract is not None and contract.active_learning.strategy == "random"
    ranked, wide = slices(size)
    candidates = store.ranked_candidates(conn, project, size if uniform else ranked)
    cold = not candidates
    explore = store.random_candidates(
        conn, project, f"{rng.getrandbits(128):032x}", wide if cold or uniform else size
    )
    confused_names, _, _ = store.project_state(conn, project)
    confused = {classes.index(c): w for c, w in confused_names.items() if c in classes}
    choices = choose(
        candidates,
        explore,
        size,
        cold=cold,
        n_classes=len(classes)
        or int(np.max([c.predicted_class or 0 for c in candidates] or [1])) + 1,
        confused=confused,
        rng=rng,
        explore_fraction=explore_fraction,
        boost_weight=boost_weight,
        uniform=uniform,
    )
    rows = store.hand_out(conn, [c.item_id for c in choices], requester, lease_s)
    store.record_batch(conn, batch_id, project, requester, len(rows), cold)
    leased = {r[0]: r for r in rows}
    ranked_by = [c.model_version for c in choices if c.model_version and c.item_id in leased]
    latest, behind = store.ranking_age(conn, project, ranked_by) if not cold else (None, 0)
    return Batch(
        choices=[c for c in choices if c.item_id in leased],
        leased=leased,
        cold=cold,
        uniform=uniform,
        # Scores stored before model versions were numbered still name their model.
        model_version=latest or next((c.model_version or "" for c in candidates), ""),
        versions_behind=behind,
        pool_left=store.pool_counts(conn, project).get("pool", 0),
    )
