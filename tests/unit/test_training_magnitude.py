"""Governance's magnitude: per-label, per-group gradient scales applied exactly by the
governed step; the rules and the learned policy that decide them; the ledger's measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from strata.common import trust
from strata.training.governance import (
    FULL_DEPTH_TRUST,
    LabelTrust,
    PolicyError,
    check_policy,
    govern,
    learned_treatment,
)
from strata.training.ledger import GradientTap, per_example_group_norms, step_norms
from strata.training.step import governed_step, plain_step
from strata.v1 import common_pb2

from tests.unit.test_training_governance import FAMILIES, _groups, batch

HUMAN, EXPERT = common_pb2.LABEL_SOURCE_HUMAN, common_pb2.LABEL_SOURCE_EXPERT
Rule = common_pb2.DepthRule


def _scales(depth: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Random positive scales per example and group, 0 past each depth."""
    rng = np.random.default_rng(seed)
    values = torch.from_numpy(rng.uniform(0.1, 2.0, size=(len(depth), k))).float()
    reach = torch.arange(1, k + 1)[None, :] <= depth[:, None]
    return values * reach


def _reference(model, inputs, targets, scale):  # type: ignore[no-untyped-def]
    """Group g's gradient computed independently: each example's loss times its scale
    in g, by plain autograd on the unrouted model (divided by the batch)."""
    out = []
    for g, group in enumerate(model.layer_groups()):
        losses = F.cross_entropy(model(*inputs), targets, reduction="none")
        loss = (losses * scale[:, g]).sum() / len(targets)
        out.append(torch.autograd.grad(loss, list(group.parameters()), allow_unused=True))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_a_scaled_groups_update_equals_the_independent_reference(family: str) -> None:
    model, inputs, targets = batch(family, 12, seed=7)
    k = len(model.layer_groups())
    depth = torch.from_numpy(np.random.default_rng(7).integers(1, k + 1, size=12))
    scale = _scales(depth, k, 7)
    reference = _reference(model, inputs, targets, scale)
    before = _groups(model)
    lr = 0.05
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    governed_step(model, optimizer, inputs, targets, depth, scale=scale)
    after = _groups(model)
    for g in range(k):
        for b, a, r in zip(before[g], after[g], reference[g], strict=True):
            expected = b - lr * (r if r is not None else torch.zeros_like(b))
            torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("family", FAMILIES)
def test_groups_not_reached_stay_bit_identical_under_scales(family: str) -> None:
    model, inputs, targets = batch(family, 6)
    k = len(model.layer_groups())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(3):  # momentum and weight decay would move a group given any gradient
        plain_step(model, optimizer, inputs, targets)
    before = _groups(model)
    depth = torch.tensor([1, 2, 1, 2, 1, 1]) if k > 2 else torch.ones(6, dtype=torch.int64)
    governed_step(model, optimizer, inputs, targets, depth, scale=_scales(depth, k, 1))
    after = _groups(model)
    reached = int(depth.max())
    assert any(not torch.equal(a, b) for a, b in zip(before[0], after[0], strict=True))
    for g in range(reached, k):
        assert all(torch.equal(a, b) for a, b in zip(before[g], after[g], strict=True))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_label_at_magnitude_zero_has_no_effect(family: str) -> None:
    model, inputs, targets = batch(family, 5, seed=2)
    k = len(model.layer_groups())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    plain_step(model, optimizer, inputs, targets)
    before = _groups(model)
    governed = govern(
        common_pb2.GovernancePolicy(rules=[Rule(influence_depth=0, gradient_scale=0.0)]),
        [LabelTrust(0.99, HUMAN)] * 5,
        k,
        4,
    )
    assert governed.depths.tolist() == [0] * 5 and not governed.scales.any()
    result = governed_step(
        model,
        optimizer,
        inputs,
        targets,
        torch.from_numpy(governed.depths),
        scale=torch.from_numpy(governed.scales),
    )
    assert result.groups_updated == 0
    for b, a in zip(before, _groups(model), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(b, a, strict=True))


def test_the_head_only_label_at_half_scale_moves_the_head_half_as_far() -> None:
    model, inputs, targets = batch("mlp", 1, seed=4)
    k = len(model.layer_groups())
    depth = torch.tensor([1])
    moves = []
    for s in (1.0, 0.5):
        copy, _, _ = batch("mlp", 1, seed=4)
        before = _groups(copy)
        scale = torch.zeros(1, k)
        scale[0, 0] = s
        governed_step(
            copy, torch.optim.SGD(copy.parameters(), lr=0.1), inputs, targets, depth, scale=scale
        )
        moves.append([a - b for a, b in zip(_groups(copy)[0], before[0], strict=True)])
    for full, half in zip(*moves, strict=True):
        torch.testing.assert_close(half, full * 0.5)


def test_the_ledger_measures_the_scaled_gradient() -> None:
    for family in ("mlp", "cnn"):  # linear groups read off the step; convolutions computed
        model, inputs, targets = batch(family, 6, seed=9)
        k = len(model.layer_groups())
        depth = torch.tensor([k, 1, 2, k, 1, 2])
        scale = _scales(depth, k, 9)
        expected = per_example_group_norms(model, inputs, targets, depth) * scale
        with GradientTap(model) as tap:
            governed_step(
                model,
                torch.optim.SGD(model.parameters(), lr=0.1),
                inputs,
                targets,
                depth,
                scale=scale,
            )
        got = step_norms(tap, model, inputs, targets, depth, 6, scale)
        read = sorted(g - 1 for g in tap.tapped_groups)
        torch.testing.assert_close(got[:, read], expected[:, read], rtol=1e-4, atol=1e-6)
        # The others are computed after the step (batch norm's statistics moved with it).
        after = per_example_group_norms(model, inputs, targets, depth) * scale
        rest = [g for g in range(k) if g not in read]
        torch.testing.assert_close(got[:, rest], after[:, rest], rtol=1e-4, atol=1e-6)


# -- rules and the learned policy ---------------------------------------------------------


def test_rules_give_one_scale_or_one_per_group() -> None:
    policy = common_pb2.GovernancePolicy(
        rules=[
            Rule(source=EXPERT, influence_depth=0),
            Rule(min_consensus_score=0.9, influence_depth=0, group_scales=[1.0, 0.5]),
            Rule(min_consensus_score=0.7, influence_depth=2, gradient_scale=0.25),
            Rule(influence_depth=1),
        ]
    )
    got = govern(
        policy,
        [
            LabelTrust(0.2, EXPERT),
            LabelTrust(0.95, HUMAN),
            LabelTrust(0.8, HUMAN),
            LabelTrust(0.3, HUMAN),
        ],
        3,
        10,
    )
    assert got.depths.tolist() == [3, 3, 2, 1]
    assert got.scales.tolist() == [
        [1.0, 1.0, 1.0],
        [1.0, 0.5, 0.5],  # groups past the list take its last value
        [0.25, 0.25, 0.0],
        [1.0, 0.0, 0.0],
    ]


def test_a_zero_scale_inside_the_reach_is_refused_with_the_rule_named() -> None:
    policy = common_pb2.GovernancePolicy(rules=[Rule(influence_depth=2, group_scales=[1.0, 0.0])])
    with pytest.raises(PolicyError, match=r"rules\[0\]\.group_scales\[1\].*lower the depth"):
        check_policy(policy, 3)


def test_the_learned_rule_scales_by_net_signal_and_keeps_doubtful_labels_at_the_head() -> None:
    trusts = np.array([1.0, 0.9, FULL_DEPTH_TRUST, 0.4, 0.1, 0.05])
    got = learned_treatment(trusts, 10, 3)
    assert got.depths.tolist() == [3, 3, 3, 1, 0, 0]
    np.testing.assert_allclose(
        got.scales[:, 0], [1.0, (9.0 - 1) / 9, (5.0 - 1) / 9, (4.0 - 1) / 9, 0.0, 0.0], rtol=1e-6
    )
    assert (got.scales[3:, 1:] == 0).all() and (got.scales[:3, 1:] == got.scales[:3, :1]).all()


def test_learned_mode_reads_trust_off_the_curve_and_trusts_experts_and_gold() -> None:
    policy = common_pb2.GovernancePolicy(mode=common_pb2.GOVERNANCE_MODE_LEARNED)
    # Gold says labels scored 0.6 are as right as those scored 0.95.
    curve = trust.fit([0.6] * 200 + [0.95] * 200, [True] * 360 + [False] * 40)
    labels = [
        LabelTrust(0.6, HUMAN),
        LabelTrust(0.95, HUMAN),
        LabelTrust(0.1, EXPERT),
        LabelTrust(0.1, HUMAN, gold=True),
    ]
    got = govern(policy, labels, 3, 10, curve)
    assert got.depths.tolist() == [3, 3, 3, 3]
    assert got.scales[2:].tolist() == [[1.0] * 3] * 2
    # Without a curve (no gold yet) every label is fully trusted: an ungoverned run.
    alone = govern(policy, [LabelTrust(0.3, HUMAN), LabelTrust(0.95, HUMAN)], 3, 10)
    assert alone.depths.tolist() == [3, 3] and (alone.scales == 1).all()
    # Gold that shows low scores are mostly wrong sends them to the head, weakened.
    low = trust.fit([0.3] * 100 + [0.95] * 100, [True] * 25 + [False] * 75 + [True] * 100)
    doubted = govern(policy, [LabelTrust(0.3, HUMAN), LabelTrust(0.95, HUMAN)], 3, 10, low)
    assert doubted.depths.tolist() == [1, 3]
    assert 0 < doubted.scales[0, 0] < 0.3 and doubted.scales[1, 0] > 0.95


# -- the trust curve ------------------------------------------------------------------------


def test_the_isotonic_fit_matches_scikit_learn() -> None:
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    x = rng.random(400).round(2)  # ties, pooled the way scikit-learn pools them
    y = (rng.random(400) < x**2).astype(float)
    w = rng.uniform(0.5, 2.0, 400)
    unique, fitted, _ = trust.isotonic(x, y, w)
    expected = IsotonicRegression().fit(x, y, sample_weight=w).predict(unique)
    np.testing.assert_allclose(fitted, expected, atol=1e-12)


def test_the_curve_is_the_prior_without_gold_and_follows_gold_as_it_grows() -> None:
    np.testing.assert_allclose(trust.fit([], [])([0.0, 0.3, 0.8, 1.0]), 1.0)
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.3, 1.0, 3000)
    right = rng.random(3000) < 0.6  # right 60% of the time whatever the score
    curve = trust.fit(scores, right)
    assert curve.gold == 3000
    values = curve(np.linspace(0.35, 0.95, 13))
    assert np.all(np.diff(values) >= 0)  # monotone
    np.testing.assert_allclose(values, 0.6, atol=0.08)
    # Few answers barely tell scores apart: the prior keeps the curve near their rate.
    few = trust.fit([0.2, 0.9, 0.95, 0.3, 0.99], [False, True, True, True, True])
    assert float(few(0.95)) - float(few(0.2)) < 0.3


def test_a_curve_survives_its_message_and_a_malformed_one_is_refused() -> None:
    curve = trust.fit([0.2, 0.5, 0.9, 0.95], [False, True, True, True])
    back = trust.from_message(trust.to_message(curve, "p"))
    assert back.scores == curve.scores and back.right == curve.right and back.gold == 4
    with pytest.raises(ValueError, match="must not decrease"):
        trust.from_message(common_pb2.TrustCurve(scores=[0, 1], right=[0.9, 0.1]))
    with pytest.raises(ValueError, match=">= 2 knots"):
        trust.from_message(common_pb2.TrustCurve(scores=[0.5], right=[0.5]))
