"""The simulated crowd answers from the confusion matrices it declares."""

from __future__ import annotations

import numpy as np
import pytest
from strata.demo.crowd import (
    DIGIT_LOOKALIKES,
    careless,
    confusion,
    digits_crowd,
    lookalike,
    ring_answer,
    ring_targets,
    spammer,
)
from strata.demo.split import plant_twins


def test_confusion_rows_are_distributions_with_the_lookalike_taking_most_mistakes() -> None:
    m = confusion(0.9, 10, DIGIT_LOOKALIKES)
    np.testing.assert_allclose(m.sum(1), 1.0)
    assert np.allclose(np.diag(m), 0.9)
    assert m[3, 8] == pytest.approx(0.1 * 0.6 + 0.1 * 0.4 / 9)
    assert m[3, 5] == pytest.approx(0.1 * 0.4 / 9)
    with pytest.raises(ValueError):
        confusion(1.2, 10)


def test_answers_follow_the_declared_confusion() -> None:
    crowd = {a.annotator_id: a for a in digits_crowd()}
    rng = np.random.default_rng(0)
    for name in ("good-1", "careless-1", "spammer-1"):
        a = crowd[name]
        answers = np.array([a.answer(3, rng) for _ in range(4000)])
        freq = np.bincount(answers, minlength=10) / len(answers)
        np.testing.assert_allclose(freq, a.confusion[3], atol=0.03)


def test_the_crowd_has_the_people_a_campaign_needs() -> None:
    crowd = digits_crowd()
    kinds = [a.kind for a in crowd]
    assert 10 <= len(crowd) <= 16 and len({a.annotator_id for a in crowd}) == len(crowd)
    assert kinds.count("spammer") == 1 and kinds.count("careless") == 1
    # A small ring: two corruptors, the only ones who collude.
    assert kinds.count("corruptor") == 2
    assert all((a.ring_share > 0) == (a.kind == "corruptor") for a in crowd)
    assert [a.reviewer for a in crowd if a.kind == "expert"] == [True, True]
    assert not any(a.reviewer for a in crowd if a.kind != "expert")
    by_skill = sorted(crowd, key=lambda a: -a.accuracy)
    assert by_skill[0].kind == "expert" and by_skill[-1].kind == "spammer"
    assert spammer(10, 1)[:, 1].tolist() == [0.7] * 10
    assert careless(0.9, 0.5, 10)[0, 0] == pytest.approx(0.5 * 0.9 + 0.05)


def test_the_ring_agrees_on_the_items_it_corrupts() -> None:
    items = [f"item-{i}" for i in range(4000)]
    targeted = [i for i in items if ring_targets(i, 0.15)]
    assert len(targeted) / len(items) == pytest.approx(0.15, abs=0.02)
    # The same decision each time it is asked, and a subset at a smaller share.
    assert targeted == [i for i in items if ring_targets(i, 0.15)]
    assert set(i for i in items if ring_targets(i, 0.05)) < set(targeted)
    assert lookalike(3, 10) == 8 and lookalike(2, 3) == 0


def test_ring_members_corrupt_only_the_ordinary_items_they_hold_together() -> None:
    ring = [a for a in digits_crowd() if a.kind == "corruptor"]
    rng = np.random.default_rng(0)
    item = next(f"item-{i}" for i in range(1000) if ring_targets(f"item-{i}", ring[0].ring_share))
    spared = next(
        f"item-{i}" for i in range(1000) if not ring_targets(f"item-{i}", ring[0].ring_share)
    )

    def answers(item_id: str, held: int, gold: bool) -> list[int]:
        return [
            ring_answer(
                m, 3, 3, rng, item_id=item_id, held_by_ring=held, gold=gold, k=10, prelabel=None
            )
            for m in ring
            for _ in range(200)
        ]

    # Held together and targeted: every member answers the look-alike.
    assert set(answers(item, 2, gold=False)) == {8}
    # Alone on it, on gold, or not targeted: honest (mostly right, like a good annotator).
    for got in (answers(item, 1, False), answers(item, 2, True), answers(spared, 2, False)):
        assert np.mean(np.asarray(got) == 3) > 0.85
    # What an honest member answers is what it sees (a twin's look-alike, say).
    seen = [
        ring_answer(ring[0], 3, 8, rng, item_id=spared, held_by_ring=2, gold=False, k=10)
        for _ in range(200)
    ]
    assert np.mean(np.asarray(seen) == 8) > 0.85


def test_planted_twins_are_near_copies_below_the_near_duplicate_threshold() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((60, 64)) < 0.4).astype(np.float32) * rng.random((60, 64)).astype(np.float32)
    x[1] = x[0]  # 0 and 1 are duplicates: neither may get a twin
    pool, imported = np.arange(40), np.arange(60)
    originals, rows = plant_twins(x, pool, imported, 5, seed=0, threshold=0.98, noise=0.2)
    assert len(originals) == len(rows) == 5 and not {0, 1} & set(originals.tolist())
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    sims = unit(rows) @ unit(x).T  # [twin, image]
    own = sims[np.arange(5), originals]
    assert np.all(own < 0.97) and np.all(own > 0.8)
    others = sims.copy()
    others[np.arange(5), originals] = -1
    assert np.all(others.max(1) < own)  # each twin is nearest its own original
    assert np.all(rows >= 0) and np.all(rows <= 1)
    with pytest.raises(ValueError):
        plant_twins(x, pool, imported, 41, seed=0)
