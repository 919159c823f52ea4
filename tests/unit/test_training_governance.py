"""Governed training's core: policy to depth, gradient routing, the ledger's measure."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from strata.models.families import ModelSpec, build, featurize
from strata.training.governance import (
    LabelTrust,
    PolicyError,
    check_policy,
    influence_depth,
    influence_depths,
)
from strata.training.ledger import GradientTap, per_example_group_norms, step_norms
from strata.training.step import governed_step, plain_step
from strata.v1 import common_pb2

HUMAN, EXPERT, MODEL = (
    common_pb2.LABEL_SOURCE_HUMAN,
    common_pb2.LABEL_SOURCE_EXPERT,
    common_pb2.LABEL_SOURCE_MODEL,
)
Rule = common_pb2.DepthRule
POLICY = common_pb2.GovernancePolicy(
    rules=[
        Rule(source=EXPERT, influence_depth=0),
        Rule(gold=True, influence_depth=0),
        Rule(source=MODEL, influence_depth=1),
        Rule(min_consensus_score=0.9, influence_depth=0),
        Rule(min_consensus_score=0.7, influence_depth=2),
        Rule(influence_depth=1),
    ]
)


@pytest.mark.parametrize(
    ("trust", "depth"),
    [
        (LabelTrust(0.3, EXPERT), 3),
        (LabelTrust(0.3, HUMAN, gold=True), 3),
        (LabelTrust(0.99, MODEL), 1),  # a model's label never reshapes features
        (LabelTrust(0.95, HUMAN), 3),
        (LabelTrust(0.9, HUMAN), 3),
        (LabelTrust(0.8, HUMAN), 2),
        (LabelTrust(0.5, HUMAN), 1),
    ],
)
def test_the_first_matching_rule_decides_the_depth(trust: LabelTrust, depth: int) -> None:
    assert influence_depth(POLICY, trust, 3) == depth


def test_no_rules_govern_nothing_and_no_match_reaches_the_head_only() -> None:
    assert influence_depth(common_pb2.GovernancePolicy(), LabelTrust(0.1, HUMAN), 4) == 4
    only_experts = common_pb2.GovernancePolicy(rules=[Rule(source=EXPERT, influence_depth=0)])
    assert influence_depth(only_experts, LabelTrust(0.99, HUMAN), 4) == 1
    depths = influence_depths(POLICY, [LabelTrust(0.95, HUMAN), LabelTrust(0.75, HUMAN)], 4)
    assert depths.tolist() == [4, 2]


def test_a_depth_the_model_does_not_have_is_refused_with_the_rule_named() -> None:
    policy = common_pb2.GovernancePolicy(rules=[Rule(influence_depth=5)])
    with pytest.raises(PolicyError, match=r"rules\[0\].*depth 5.*3 layer groups"):
        check_policy(policy, 3)


# -- routing ---------------------------------------------------------------------------


def _png(pixels: np.ndarray) -> bytes:  # type: ignore[type-arg]
    out = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def batch(family: str, n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A model of `family` without dropout, and a batch of n examples for it."""
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"]
    if family == "mlp":
        spec = ModelSpec("mlp", classes, input_dim=12, dropout=0.0)
        contents = [
            common_pb2.ItemContent(features=common_pb2.FeatureVector(values=rng.normal(size=12)))
            for _ in range(n)
        ]
    elif family == "text-hash":
        spec = ModelSpec("text-hash", classes, buckets=512, dropout=0.0)
        words = ["red", "blue", "cat", "dog", "runs", "fast", "slow", "big"]
        contents = [
            common_pb2.ItemContent(
                text=" ".join(rng.choice(words, size=int(rng.integers(2, 7))).tolist())
            )
            for _ in range(n)
        ]
    else:
        spec = ModelSpec("cnn", classes, image_size=12, dropout=0.0)
        contents = [
            common_pb2.ItemContent(image=common_pb2.Image(png=_png(rng.random((12, 12)))))
            for _ in range(n)
        ]
    torch.manual_seed(seed)
    model = build(spec)
    targets = torch.from_numpy(rng.integers(0, 4, size=n))
    return model, featurize(spec, contents), targets


FAMILIES = ["mlp", "text-hash", "cnn"]


def _groups(model):  # type: ignore[no-untyped-def]
    return [[p.detach().clone() for p in g.parameters()] for g in model.layer_groups()]


@pytest.mark.parametrize("family", FAMILIES)
def test_routed_forward_gives_the_same_logits(family: str) -> None:
    model, inputs, _ = batch(family, 6)
    depth = torch.tensor([1, 2, 3, 1, 2, 3])
    assert torch.equal(model(*inputs), model.forward_routed(*inputs, depth=depth))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_head_only_label_leaves_every_deeper_group_bit_identical(family: str) -> None:
    model, inputs, targets = batch(family, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(3):  # warm the optimizer: momentum and weight decay would move groups
        plain_step(model, optimizer, inputs, targets)
    before = _groups(model)
    one = model.example_inputs(inputs, 0)
    result = governed_step(model, optimizer, one, targets[:1], torch.tensor([1]))
    after = _groups(model)
    assert result.groups_updated == 1
    assert any(not torch.equal(a, b) for a, b in zip(before[0], after[0], strict=True))
    for deeper_before, deeper_after in zip(before[1:], after[1:], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(deeper_before, deeper_after, strict=True))


def _reference_gradients(model, inputs, targets, depth):  # type: ignore[no-untyped-def]
    """Group g's gradient from the examples routed to g or deeper only, each computed
    by plain autograd on the unrouted model (the loss still divided by the batch)."""
    out = []
    for g, group in enumerate(model.layer_groups(), start=1):
        params = list(group.parameters())
        keep = depth >= g
        losses = F.cross_entropy(model(*inputs), targets, reduction="none")
        loss = (losses * keep).sum() / len(targets)
        out.append(torch.autograd.grad(loss, params, allow_unused=True))
    return out


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_a_mixed_batch_moves_each_group_only_by_the_labels_routed_to_it(family: str) -> None:
    model, inputs, targets = batch(family, 16, seed=3)
    k = len(model.layer_groups())
    depth = torch.from_numpy(np.random.default_rng(3).integers(1, k + 1, size=16))
    reference = _reference_gradients(model, inputs, targets, depth)
    before = _groups(model)
    lr = 0.05
    governed_step(model, torch.optim.SGD(model.parameters(), lr=lr), inputs, targets, depth)
    after = _groups(model)
    for g in range(k):
        for b, a, r in zip(before[g], after[g], reference[g], strict=True):
            expected = b - lr * (r if r is not None else torch.zeros_like(b))
            torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-7)


def test_text_model_routing_matches_its_reference_too() -> None:
    model, inputs, targets = batch("text-hash", 10, seed=5)
    depth = torch.tensor([1, 2, 3, 3, 2, 1, 1, 3, 2, 2])
    reference = _reference_gradients(model, inputs, targets, depth)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    optimizer.zero_grad()
    losses = F.cross_entropy(model.forward_routed(*inputs, depth=depth), targets, reduction="none")
    (losses.sum() / len(targets)).backward()
    for g, group in enumerate(model.layer_groups()):
        for p, r in zip(group.parameters(), reference[g], strict=True):
            torch.testing.assert_close(p.grad, r, rtol=1e-5, atol=1e-7)


# -- the ledger's measure --------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_per_example_group_norms_match_one_backward_per_example(family: str) -> None:
    model, inputs, targets = batch(family, 7, seed=2)
    k = len(model.layer_groups())
    depth = torch.tensor([k, 1, 2, k, 1, 2, k])
    norms = per_example_group_norms(model, inputs, targets, depth)
    assert norms.shape == (7, k)
    for i in range(7):
        loss = F.cross_entropy(model(*model.example_inputs(inputs, i)), targets[i : i + 1])
        for g, group in enumerate(model.layer_groups(), start=1):
            grads = torch.autograd.grad(loss, list(group.parameters()), retain_graph=True)
            expected = torch.sqrt(sum(x.pow(2).sum() for x in grads)) if g <= depth[i] else 0.0
            torch.testing.assert_close(
                norms[i, g - 1], torch.as_tensor(expected), rtol=1e-4, atol=1e-6
            )


def test_the_tap_reads_the_same_norms_off_the_training_step() -> None:
    model, inputs, targets = batch("mlp", 9, seed=4)
    depth = torch.tensor([3, 1, 2, 3, 1, 2, 3, 3, 1])
    expected = per_example_group_norms(model, inputs, targets, depth)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientTap(model) as tap:
        governed_step(model, optimizer, inputs, targets, depth)
    assert tap.tapped_groups == {1, 2, 3}
    torch.testing.assert_close(tap.norms(len(targets)), expected, rtol=1e-4, atol=1e-6)


def test_groups_the_tap_cannot_read_are_marked_then_computed() -> None:
    model, inputs, targets = batch("cnn", 4)
    depth = torch.tensor([4, 1, 3, 4])
    expected = per_example_group_norms(model, inputs, targets, depth)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientTap(model) as tap:
        governed_step(model, optimizer, inputs, targets, depth)
    assert tap.tapped_groups == {1, 2}
    norms = tap.norms(4)
    assert torch.isnan(norms[:, 2:]).all() and torch.isfinite(norms[:, :2]).all()
    torch.testing.assert_close(norms[:, :2], expected[:, :2], rtol=1e-4, atol=1e-6)
    # The convolutions' norms come from torch.func, routed like the rest.
    full = step_norms(tap, model, inputs, targets, depth, 4)
    assert torch.isfinite(full).all() and (full[1, 1:] == 0).all() and full[2, 3] == 0
    assert (full[0, 2:] > 0).all()


def test_the_ray_job_sets_the_poll_interval_ray_train_reads() -> None:
    from ray.train.v2._internal.constants import HEALTH_CHECK_INTERVAL_S_ENV_VAR
    from strata.training.config import TrainingConfig
    from strata.training.runs import ray_train_env

    env = ray_train_env(TrainingConfig(ray_train_poll_s=0.25))
    assert env == {HEALTH_CHECK_INTERVAL_S_ENV_VAR: "0.25"}
