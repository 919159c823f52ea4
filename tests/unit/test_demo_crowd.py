"""The simulated crowd answers from the confusion matrices it declares."""

from __future__ import annotations

import numpy as np
import pytest
from strata.demo.crowd import DIGIT_LOOKALIKES, careless, confusion, digits_crowd, spammer


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
    assert 10 <= len(crowd) <= 14 and len({a.annotator_id for a in crowd}) == len(crowd)
    assert kinds.count("spammer") == 1 and kinds.count("careless") == 1
    assert [a.reviewer for a in crowd if a.kind == "expert"] == [True, True]
    assert not any(a.reviewer for a in crowd if a.kind != "expert")
    by_skill = sorted(crowd, key=lambda a: -a.accuracy)
    assert by_skill[0].kind == "expert" and by_skill[-1].kind == "spammer"
    assert spammer(10, 1)[:, 1].tolist() == [0.7] * 10
    assert careless(0.9, 0.5, 10)[0, 0] == pytest.approx(0.5 * 0.9 + 0.05)
