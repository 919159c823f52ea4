"""Votes changed by their annotators (AmendLabel at the gateway).

A change replaces its vote's value; it never adds a vote. What the vote counted for is
corrected by the difference: an annotator's gold record and anchoring counts, and the
item's consensus (an undecided item is decided afresh; an accepted item whose deciding
answer was withdrawn goes back to review). `gold_delta` is the pure part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strata.quality.store import Conn, GoldDelta, NewVote


@dataclass(frozen=True)
class VoteChange:
    """A change applied to a stored vote: `vote` carries the new value."""

    vote: NewVote
    revision: int
    old_value: str
    gold_answer: str | None
    prelabel_value: str | None
    source: str


def gold_delta(change: VoteChange) -> GoldDelta | None:
    """What the change does to its annotator's gold record; None for a non-gold vote."""
    answer = change.gold_answer
    if change.source != "human" or not answer:
        return None
    new, old, shown = change.vote.value, change.old_value, change.prelabel_value
    wrong = bool(shown and shown != answer)
    return GoldDelta(
        answered=0,
        correct=int(new == answer) - int(old == answer),
        wrong_prelabels_shown=0,
        wrong_prelabels_followed=int(wrong and new == shown) - int(wrong and old == shown),
    )


def apply_changes(
    conn: Conn, changes: Sequence[tuple[NewVote, int]]
) -> tuple[list[VoteChange], list[NewVote]]:
    """Apply (vote with its new value, revision) changes, newest revision per vote.

    Returns the changes applied and the votes that were never stored (their label was
    refused, so the change has nothing to change). A revision at or below the stored one
    is a redelivery and does nothing.
    """
    newest: dict[str, tuple[NewVote, int]] = {}
    for vote, revision in changes:
        if vote.label_id not in newest or revision > newest[vote.label_id][1]:
            newest[vote.label_id] = (vote, revision)
    if not newest:
        return [], []
    rows = conn.execute(
        "SELECT label_id, value, revision, gold_answer, prelabel_value, source FROM votes "
        "WHERE label_id = ANY(%s) ORDER BY label_id FOR UPDATE",
        (sorted(newest),),
    ).fetchall()
    stored = {r[0]: r[1:] for r in rows}
    applied: list[VoteChange] = []
    unknown: list[NewVote] = []
    for label_id, (vote, revision) in newest.items():
        if label_id not in stored:
            unknown.append(vote)
            continue
        value, stored_revision, gold_answer, prelabel_value, source = stored[label_id]
        if revision <= stored_revision:
            continue
        applied.append(VoteChange(vote, revision, value, gold_answer, prelabel_value, source))
    if applied:
        conn.execute(
            "UPDATE votes v SET value = c.value, revision = c.revision, amended_at = now() "
            "FROM unnest(%s::text[], %s::text[], %s::int[]) AS c(label_id, value, revision) "
            "WHERE v.label_id = c.label_id",
            (
                [c.vote.label_id for c in applied],
                [c.vote.value for c in applied],
                [c.revision for c in applied],
            ),
        )
    return applied, unknown
