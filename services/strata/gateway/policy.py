"""Assignment and submission policy: pure decisions, no I/O.

The store gathers candidates and task snapshots under row locks; these
functions decide what an annotator gets and whether a label is accepted.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc

from strata.v1 import common_pb2

# The roles a person can hold in a project, least to most; admin is global.
PROJECT_ROLES = {
    common_pb2.ROLE_ANNOTATOR: "annotator",
    common_pb2.ROLE_REVIEWER: "reviewer",
    common_pb2.ROLE_MANAGER: "manager",
}
ROLE_ENUM = {name: value for value, name in PROJECT_ROLES.items()} | {
    "admin": common_pb2.ROLE_ADMIN
}
STATUSES = {
    common_pb2.ANNOTATOR_STATUS_ACTIVE: "active",
    common_pb2.ANNOTATOR_STATUS_RETRAIN: "retrain",
    common_pb2.ANNOTATOR_STATUS_BLOCKED: "blocked",
}
STATUS_ENUM = {name: value for value, name in STATUSES.items()}
REVIEWER_ROLES = ("reviewer", "manager")


@dataclass(frozen=True)
class Membership:
    """A person's standing in one project."""

    role: str  # annotator | reviewer | manager
    status: str = "active"
    status_reason: str = ""

    @property
    def reviews(self) -> bool:
        return self.role in REVIEWER_ROLES


# An admin who is not a member works in a project as its manager would.
ADMIN_STANDING = Membership("manager")


@dataclass(frozen=True)
class Principal:
    """Who is calling, from their token, with every project they are a member of."""

    annotator_id: str
    admin: bool = False
    memberships: tuple[tuple[str, Membership], ...] = ()

    def membership(self, project: str) -> Membership | None:
        """Their standing in `project`; None for a non-member (an admin: as a manager)."""
        for name, m in self.memberships:
            if name == project:
                return m
        return ADMIN_STANDING if self.admin else None

    @property
    def projects(self) -> list[str]:
        return [name for name, _ in self.memberships]


@dataclass(frozen=True)
class Candidate:
    """A unit of work an annotator could be given."""

    unit_id: int
    item_id: str
    kind: str  # label | gold | review


def refill_plan(
    contract: common_pb2.LabelingContract, low_water: int, batch: int
) -> tuple[int, int]:
    """(open slots to keep when nobody is asking, items per sampler batch) for a project.

    Items wait in the ready queue ranked by the model that was serving when they were
    pulled. A deep queue means annotators label what an old model (or the cold start)
    chose, which undoes active learning; so at rest the queue holds about one
    active-learning batch (`overlap.min` x `active_learning.batch_size` slots), never
    more than the configured low-water mark, and pulls at most one such batch at a time.
    Under demand `low_water_mark` raises the mark to a few seconds of work.
    """
    al_batch = contract.active_learning.batch_size
    size = min(batch, al_batch) if al_batch > 0 else batch
    keep = min(low_water, max(1, contract.overlap.min) * size)
    return keep, size


def low_water_mark(
    at_rest: int, demand_per_s: float, cover_s: float, most: int, sampler_lease_s: float
) -> int:
    """Open slots below which the gateway asks the sampler for more: the slots annotators
    take in `cover_s` seconds at the measured demand (the time a refill takes and then
    some), never less than the mark at rest, never more than `most`, and never more than
    half a sampler lease of demand: an item still queued when the sampler's lease on it
    runs out goes back to the pool and could be handed out twice. The queue then holds
    seconds of work, so what annotators label was ranked seconds ago, however fast they
    go."""
    if demand_per_s <= 0:
        return at_rest
    wanted = math.ceil(demand_per_s * cover_s)
    bound = min(most, math.floor(demand_per_s * sampler_lease_s / 2))
    return max(at_rest, min(wanted, bound))


# The most of what a project's pool has left that its ready queue holds when demand
# raises the low-water mark: the next model still chooses the rest.
POOL_SHARE = 0.25


def pool_share_bound(pool_left: int | None, overlap_min: int) -> int | None:
    """The open slots a queue may hold when the sampler has `pool_left` items left in
    the pool (None: it did not say): a `POOL_SHARE` of them, in slots.

    A queue holds what the model of the moment (or the cold start) chose. In a pool of
    millions a few seconds of demand is a sliver of it. In the fast demo's pool of 400,
    the crowd's first second of misses raised the mark to twice its mark at rest before
    any model existed; a queue that follows such demand into a large share of a small
    pool leaves the first model little to choose. The mark at rest still applies.
    """
    if pool_left is None:
        return None
    return int(max(1, overlap_min) * pool_left * POOL_SHARE)


def measured_rate(events: int, span_s: float, window_s: float) -> float:
    """Events a second from the `events` seen in the last `window_s` seconds, the oldest
    `span_s` ago: over the span they cover, not the whole window, once there are two
    (never over less than a second). After a lull (a shift starting, a campaign opening)
    the window is mostly empty; dividing by all of it read 200 annotators arriving at
    once as a trickle for the window's first seconds, and their queue ran dry meanwhile
    (`bench/scale.py` at 200 clients: most empty calls came in the first 4 s)."""
    if events < 2:
        return events / window_s
    return (events - 1) / min(window_s, max(1.0, span_s))


# The largest batch a refill asks for: up to it a hand-out reads the same 2,000 ranked
# candidates, and it stays well inside the refill's 10 s deadline on a loaded machine
# (a batch the gateway gave up on stays leased to it at the sampler).
MOST_PER_BATCH = 500


def items_lacking(
    mark: int, ready: int, demand_per_s: float, refill_s: float, overlap_min: int
) -> int:
    """Items a batch asked for now should bring: what the queue will lack of its mark
    when the batch lands, i.e. what it lacks now plus what annotators take while the
    batch comes (each item opens `overlap_min` slots).

    Asking for what the queue lacks now fell behind under load: at 1M texts and 200
    annotators a batch took 1.4 s, in which they took about 300 slots, and brought the
    187 the queue lacked when it was asked for; batch after batch the queue sank below
    its mark until it ran dry."""
    short = mark - ready + math.ceil(max(0.0, demand_per_s) * refill_s)
    return max(0, -(-short // max(1, overlap_min)))


def refill_batch_size(at_rest: int, short: int) -> int:
    """Items to ask the sampler for in one batch when the queue will lack `short` items'
    worth of open slots below its low-water mark as the batch lands (`items_lacking`):
    those, never less than the contract's active-learning batch (`refill_plan`), never
    more than `MOST_PER_BATCH`.

    The mark follows demand, so under demand the batch does too: the gateway asks one
    batch at a time, and a batch costs the sampler much the same whatever its size (its
    ranked slice has a floor of 2,000 rows), so at its at-rest size a slow hand-out (a
    loaded machine, k-center over embeddings) would cap the queue's supply below the
    demand. And as a batch lands the queue holds about its mark, at most the mark plus
    one at-rest batch when demand is steady: what the cold start or an old model chose
    waits no longer than when batches had one size.
    """
    return max(at_rest, min(MOST_PER_BATCH, short))


def gold_rate_for(contract: common_pb2.LabelingContract, tasks_taken: int) -> float:
    """The chance that an annotator's next task is gold, after `tasks_taken` tasks of
    the project: the probation rate for their first `gold_probation_tasks`, so gold
    finds a spammer within a few tasks, then the contract's rate."""
    if tasks_taken < contract.gold_probation_tasks:
        return max(contract.gold_rate, contract.gold_probation_rate)
    return contract.gold_rate


def roll_gold(rng: random.Random, gold_rate: float) -> bool:
    """Each task is gold with probability `gold_rate`, independently: no pattern to learn."""
    return gold_rate > 0 and rng.random() < gold_rate


# -- gold pre-labels -----------------------------------------------------------


@dataclass(frozen=True)
class ShownProfile:
    """The pre-label a decided pool task showed, and whether it matched the decision."""

    confidence: float
    agreed: bool


def agreement_rate(
    profiles: Sequence[ShownProfile], confidence: float, near: float = 0.1, enough: int = 20
) -> float:
    """How often pool pre-labels of about `confidence` matched their item's decision; until
    `enough` are decided, the confidence itself (what calibration promises)."""
    close = [p.agreed for p in profiles if abs(p.confidence - confidence) <= near]
    return sum(close) / len(close) if len(close) >= enough else confidence


def plausible_confusion(
    answer: str, model_value: str | None, runner_up: str | None, classes: list[str], rng: Any
) -> str:
    """A wrong class a model could well have said: its own mistake on the item, else its
    second choice, else another class at random."""
    for candidate in (model_value, runner_up):
        if candidate and candidate != answer and candidate in classes:
            return candidate
    return str(rng.choice([c for c in classes if c != answer]))


def gold_prelabel(
    replaced: common_pb2.PreLabel | None,
    right_rate: float,
    answer: str,
    model_value: str | None,
    runner_up: str | None,
    classes: list[str],
    honeypot_rate: float,
    rng: Any,
) -> tuple[common_pb2.PreLabel | None, bool]:
    """What a gold task shows, and whether it is a honeypot.

    Gold is only served in place of a pool task, and shows what that task would have
    shown (`replaced`): whether a pre-label, its confidence and its model version, so
    they follow the pool's distribution at every moment, auto-accept and spot checks
    included, and a confident pre-label says nothing about gold. Its value is right as
    often as pool pre-labels of that confidence are (`right_rate`); a `honeypot_rate`
    share of the gold tasks that show one get a deliberately wrong, plausible one instead.
    """
    if replaced is None or len(classes) < 2:
        return None, False
    honeypot = rng.random() < honeypot_rate
    right = rng.random() < right_rate and not honeypot
    value = answer if right else plausible_confusion(answer, model_value, runner_up, classes, rng)
    shown = common_pb2.PreLabel(
        value=value,
        confidence=replaced.confidence,
        model_version=replaced.model_version,
        calibrated=replaced.calibrated,
    )
    return shown, honeypot


def choose_unit(
    member: Membership,
    *,
    regular: Candidate | None,
    gold: Candidate | None,
    review: Candidate | None,
    gold_roll: bool,
) -> Candidate | None:
    """What a member with standing `member` gets next, or None.

    Gold is only ever served in place of a real task, so an empty queue never
    hands out gold and gold cannot be told apart by when it arrives.
    Annotators in retraining get gold tasks only, until quality re-activates them.
    """
    if member.status == "blocked":
        return None
    if member.status == "retrain":
        return gold
    if review is not None and member.reviews:
        return review
    if regular is None:
        return None
    if gold_roll and gold is not None:
        return gold
    return regular


# -- submissions ---------------------------------------------------------


@dataclass(frozen=True)
class TaskSnapshot:
    """A task and its unit as read, locked, in the submitting transaction."""

    task_id: str
    annotator_id: str
    state: str  # leased | labeled | skipped | expired | released
    kind: str
    lease_expires_at: datetime
    ontology_version: str
    unit_state: str  # open | done | closed
    unit_slots_open: int
    project: str = ""


@dataclass(frozen=True)
class Accept:
    """The label is accepted; `reclaim_slot` when it fills a slot its expired lease gave back."""

    reclaim_slot: bool = False


@dataclass(frozen=True)
class Reject:
    code: grpc.StatusCode
    message: str


def check_value(
    value: str, duration_ms: int, max_value_bytes: int, active_ms: int = 0
) -> Reject | None:
    """Checks that need no database: empty, oversized, negative or impossible times."""
    if not value.strip():
        return Reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            "value is empty: send one of the class names listed on the task",
        )
    if len(value.encode()) > max_value_bytes:
        return Reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"value is {len(value.encode())} bytes; at most {max_value_bytes} are allowed "
            "(send a class name, not free text)",
        )
    if duration_ms < 0:
        return Reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"duration_ms must be zero or positive, got {duration_ms}",
        )
    if active_ms < 0 or (duration_ms and active_ms > duration_ms):
        return Reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"active_ms must be between 0 and duration_ms ({duration_ms}), got {active_ms}",
        )
    return None


def blocked_message(principal: Principal, project: str) -> str:
    member = principal.membership(project)
    reason = f" ({member.status_reason})" if member and member.status_reason else ""
    return (
        f"annotator {principal.annotator_id} is blocked in project {project}{reason}; "
        "ask a project manager"
    )


def not_found(task_id: str) -> Reject:
    # Same answer whether the task does not exist or is someone else's: no probing.
    return Reject(grpc.StatusCode.NOT_FOUND, f"no task {task_id} is assigned to you")


def unknown_class(value: str, classes: list[str], version: str) -> Reject:
    shown = ", ".join(repr(c) for c in classes[:20]) + (" ..." if len(classes) > 20 else "")
    return Reject(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{value[:64]!r} is not a class of contract version {version}; use one of {shown}",
    )


def refuse_stranger(task: TaskSnapshot | None, principal: Principal, task_id: str) -> Reject | None:
    """Refuse anyone but the task's own annotator, a member of its project, unblocked.
    Someone else's task, and one of a project left behind, look exactly like none."""
    if task is None or task.annotator_id != principal.annotator_id:
        return not_found(task_id)
    member = principal.membership(task.project)
    if member is None:
        return not_found(task_id)
    if member.status == "blocked":
        return Reject(grpc.StatusCode.PERMISSION_DENIED, blocked_message(principal, task.project))
    return None


def check_submission(
    task: TaskSnapshot | None,
    principal: Principal,
    value: str,
    classes: list[str],
    now: datetime,
    *,
    task_id: str,
) -> Accept | Reject:
    """May `principal` label `task` with `value` now?"""
    refused = refuse_stranger(task, principal, task_id)
    if refused is not None:
        return refused
    assert task is not None
    if task.state == "labeled":
        return Reject(
            grpc.StatusCode.ALREADY_EXISTS,
            f"task {task_id} already has your label; resend with the same client_label_id "
            "to get its id, or ask for a new task",
        )
    if task.state in ("skipped", "released"):
        return Reject(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"task {task_id} was {task.state} and no longer takes a label; ask for a new task",
        )
    if value not in classes:
        return unknown_class(value, classes, task.ontology_version)
    if task.state == "leased":
        # Past its expiry but not yet swept: the slot is still this task's.
        return Accept()
    # state == "expired": the slot went back to the queue. Take it back if nobody has.
    if task.unit_state == "open" and task.unit_slots_open > 0:
        return Accept(reclaim_slot=True)
    return Reject(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"the lease on task {task_id} expired at {task.lease_expires_at.isoformat()} "
        "and the item was given to another annotator; ask for a new task",
    )
