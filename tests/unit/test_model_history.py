"""The pure parts of ListModels and ItemLineage: gold accuracy, influence per group."""

from __future__ import annotations

import pytest
from strata.inference.calibration import gold_accuracy
from strata.training.ledger import by_group


def test_gold_accuracy_is_the_share_right_and_nothing_measured_says_zero() -> None:
    assert gold_accuracy([True, True, False, True]) == (0.75, 4)
    assert gold_accuracy([]) == (0.0, 0)


def test_influence_by_group_puts_group_one_first_and_zero_where_a_label_did_not_reach() -> None:
    assert by_group([2, 1], [0.25, 0.5], 3) == [0.5, 0.25, 0.0]
    assert by_group([1, 2, 3], [0.9, 0.4, 0.1], 3) == [0.9, 0.4, 0.1]
    # A model whose group names are unknown: as many groups as the ledger reached.
    assert by_group([1, 2], [0.5, 0.25], 0) == [0.5, 0.25]
    assert by_group([], [], 2) == [0.0, 0.0]
    with pytest.raises(ValueError):
        by_group([1, 2], [0.5], 3)
