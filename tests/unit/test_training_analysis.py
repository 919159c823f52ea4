"""What a run says about its labels: memorization flags, TracIn, depth profiles, run checks."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from strata.gateway.contract import default_governance
from strata.models.families import GroupedModel, ModelSpec, build
from strata.training import analysis
from strata.training.dataset import RunRejected, prepare
from strata.training.governance import LabelTrust, influence_depths
from strata.training.handlers import label_source
from strata.training.runs import group_names
from strata.training.step import governed_step
from strata.training.store import LabelRow, TrainingRow
from strata.v1 import common_pb2

CLASSES = [str(d) for d in range(10)]


def digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)
    return x[:n], y[:n], x[n:], y[n:]


def train(
    x: np.ndarray,  # type: ignore[type-arg]
    y: np.ndarray,  # type: ignore[type-arg]
    epochs: int,
    keep_every: int = 0,
) -> tuple[GroupedModel, np.ndarray, list[analysis.Checkpoint]]:  # type: ignore[type-arg]
    """A digits MLP trained on every label at full depth; which labels each epoch got
    right, and checkpoints every `keep_every` epochs."""
    torch.manual_seed(0)
    model = build(ModelSpec("mlp", CLASSES, input_dim=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    depth = torch.full((len(y),), 3)
    correct = np.zeros((epochs, len(y)), dtype=bool)
    saved = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(y))
        for b in range(0, len(y), 64):
            i = order[b : b + 64]
            result = governed_step(model, optimizer, (xs[i],), ys[i], depth[i])
            correct[epoch, i] = result.correct.numpy()
        if keep_every and (epoch + 1) % keep_every == 0:
            saved.append(analysis.Checkpoint(copy.deepcopy(model), 3e-3))
    return model, correct, saved


def test_memorization_flags_catch_most_deliberately_flipped_labels() -> None:
    x, y, _, _ = digits(1400)
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), size=70, replace=False)
    noisy = y.copy()
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 10, size=70)) % 10
    model, correct, _ = train(x, noisy, epochs=150)  # long enough to memorize them
    inputs = (torch.from_numpy(x),)
    fitted = analysis.logits_of(model, inputs).argmax(1).numpy() == noisy
    assert fitted[flipped].mean() > 0.8  # the model did memorize them
    flags = analysis.memorization_flags(
        analysis.neighbour_features(model, inputs), noisy, fitted, correct
    )
    caught = {f.index for f in flags}
    precision = len(caught & set(flipped.tolist())) / max(len(caught), 1)
    recall = len(caught & set(flipped.tolist())) / len(flipped)
    print(
        f"memorization flags: {len(caught)} flagged, precision {precision:.2f}, recall {recall:.2f}"
    )
    assert recall >= 0.8 and precision >= 0.8
    assert all("nearest training labels say otherwise" in f.reason for f in flags)
    assert [f.score for f in flags] == sorted((f.score for f in flags), reverse=True)


def test_memorization_flags_are_not_raised_on_clean_labels() -> None:
    x, y, _, _ = digits(600)
    model, correct, _ = train(x, y, epochs=30)
    inputs = (torch.from_numpy(x),)
    fitted = analysis.logits_of(model, inputs).argmax(1).numpy() == y
    flags = analysis.memorization_flags(
        analysis.neighbour_features(model, inputs), y, fitted, correct
    )
    assert len(flags) <= 0.01 * len(y)


def test_tracin_names_a_mislabeled_twin_among_the_top_opponents() -> None:
    x, y, _, _ = digits(1000)
    noisy = y.copy()
    twin = 17
    noisy[twin] = (y[twin] + 4) % 10
    model, _, saved = train(x, noisy, epochs=20, keep_every=5)
    target = (torch.from_numpy(x[twin : twin + 1] + 0.01),)
    predicted = int(analysis.logits_of(model, target).argmax(1)[0])
    assert predicted == y[twin]  # the model did not memorize the twin
    depth = torch.full((len(y),), 3)
    scores = analysis.tracin(
        saved, target, predicted, (torch.from_numpy(x),), torch.from_numpy(noisy), depth
    )
    total = scores.sum(1)
    assert twin in np.argsort(total)[:5].tolist()
    # A label routed to the head only is counted in the head only.
    shallow = depth.clone()
    shallow[twin] = 1
    routed = analysis.tracin(
        saved, target, predicted, (torch.from_numpy(x),), torch.from_numpy(noisy), shallow
    )
    assert routed[twin, 1:].tolist() == [0.0, 0.0]
    assert routed[twin, 0] == pytest.approx(scores[twin, 0])


def _flat_grad(model: GroupedModel, inputs: torch.Tensor, target_class: int) -> torch.Tensor:
    loss = torch.nn.functional.cross_entropy(model(inputs), torch.tensor([target_class]))
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def test_tracin_matches_explicit_gradient_dot_products() -> None:
    x, y, _, _ = digits(40)
    _, _, saved = train(x, y, epochs=2, keep_every=1)
    target = (torch.from_numpy(x[:1]),)
    scores = analysis.tracin(
        saved, target, 3, (torch.from_numpy(x),), torch.from_numpy(y), torch.full((40,), 3)
    )
    expected = np.zeros(40)
    for cp in saved:
        cp.model.eval()
        g_target = _flat_grad(cp.model, target[0], 3)
        for i in range(40):
            g = _flat_grad(cp.model, torch.from_numpy(x[i : i + 1]), int(y[i]))
            expected[i] += cp.lr * float(g @ g_target)
    np.testing.assert_allclose(scores.sum(1), expected, rtol=1e-4, atol=1e-7)


def test_depth_profiles_are_lower_for_a_trained_model() -> None:
    x, y, xe, ye = digits(1000)
    spec = ModelSpec("mlp", CLASSES, input_dim=64)
    torch.manual_seed(0)
    untrained = build(spec)
    trained, _, _ = train(x, y, epochs=15)
    args = (
        (torch.from_numpy(x),),
        torch.from_numpy(y),
        (torch.from_numpy(xe),),
        torch.from_numpy(ye),
        CLASSES,
    )
    before = analysis.depth_profiles(untrained, *args)
    after = analysis.depth_profiles(trained, *args)
    assert set(after) == set(CLASSES) and all(len(v) == 3 for v in after.values())
    assert all(0.0 <= e <= 1.0 for v in after.values() for e in v)
    head_before = np.mean([v[0] for v in before.values()])
    head_after = np.mean([v[0] for v in after.values()])
    assert head_after < head_before


def row(item: str, value: str, score: float = 0.95, content: bytes | None = None) -> TrainingRow:
    c = common_pb2.ItemContent(features=common_pb2.FeatureVector(values=[0.1] * 64))
    return TrainingRow(
        LabelRow(
            item,
            "p",
            f"l-{item}",
            value,
            score,
            common_pb2.LABEL_SOURCE_HUMAN,
            common_pb2.CONSENSUS_METHOD_DAWID_SKENE,
            common_pb2.CONSENSUS_STATUS_ACCEPTED,
            ["a"],
            "v1",
            datetime.now(UTC),
        ),
        content or c.SerializeToString(),
        False,
    )


def contract(rules: list[common_pb2.DepthRule] | None = None) -> common_pb2.LabelingContract:
    c = common_pb2.LabelingContract(project="p", version="v1")
    c.classes.extend(common_pb2.ClassDefinition(name=n) for n in ("cat", "dog", "bird"))
    if rules:
        c.governance.rules.extend(rules)
    return c


def test_prepare_says_why_a_run_cannot_start() -> None:
    with pytest.raises(RunRejected, match="2 accepted labels; a run needs at least 3"):
        prepare([row("a", "cat"), row("b", "dog")], contract(), "", 3)
    with pytest.raises(RunRejected, match="are 'cat': a classifier needs labels of at least two"):
        prepare([row(str(i), "cat") for i in range(5)], contract(), "", 3)
    bad = common_pb2.DepthRule(influence_depth=7)
    with pytest.raises(RunRejected, match="depth 7, but the model has 3 layer groups"):
        prepare([row(str(i), ["cat", "dog"][i % 2]) for i in range(5)], contract([bad]), "", 3)
    text = common_pb2.ItemContent(text="hello").SerializeToString()
    mixed = [row(str(i), ["cat", "dog"][i % 2]) for i in range(4)] + [row("t", "cat", content=text)]
    with pytest.raises(RunRejected, match="mix content kinds"):
        prepare(mixed, contract(), "", 3)
    # Labels of a class the contract dropped are left out, and counted.
    data = prepare([row(str(i), ["cat", "dog", "fox"][i % 3]) for i in range(9)], contract(), "", 3)
    assert data.dropped == 3 and len(data.rows) == 6 and data.spec.family == "mlp"
    assert data.targets.tolist() == [0, 1, 0, 1, 0, 1] and data.depths.tolist() == [3] * 6


def test_governance_sees_who_decided_each_label() -> None:
    human = common_pb2.Vote(annotator_id="a", value="cat", source=common_pb2.LABEL_SOURCE_HUMAN)
    model = common_pb2.Vote(
        annotator_id="model:v1", value="cat", source=common_pb2.LABEL_SOURCE_MODEL
    )
    auto = common_pb2.ConsensusLabel(
        value="cat", method=common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT, votes=[model]
    )
    assert label_source(auto) == common_pb2.LABEL_SOURCE_MODEL
    propagated = common_pb2.ConsensusLabel(
        value="cat", method=common_pb2.CONSENSUS_METHOD_PROPAGATED, votes=[model]
    )
    assert label_source(propagated) == common_pb2.LABEL_SOURCE_MODEL
    confirmed = common_pb2.ConsensusLabel(
        value="cat", method=common_pb2.CONSENSUS_METHOD_DAWID_SKENE, votes=[model, human]
    )
    assert label_source(confirmed) == common_pb2.LABEL_SOURCE_HUMAN
    expert = common_pb2.ConsensusLabel(
        value="cat", status=common_pb2.CONSENSUS_STATUS_EXPERT, votes=[human]
    )
    assert label_source(expert) == common_pb2.LABEL_SOURCE_EXPERT


def test_layer_groups_are_named_from_the_head() -> None:
    assert group_names(build(ModelSpec("mlp", CLASSES, input_dim=64))) == [
        "head",
        "hidden",
        "input",
    ]
    assert group_names(build(ModelSpec("cnn", CLASSES))) == ["head", "hidden", "conv2", "conv1"]
    assert group_names(build(ModelSpec("text-hash", CLASSES))) == ["head", "hidden", "bag"]


def noisy_digits_accuracy(seed: int, governed: bool) -> float:
    """Held-out accuracy of the digits MLP trained on 500 labels of which 40% have low
    consensus (0.5) and 70% of those are wrong; the default policy routes them to the
    head only when `governed`, the others are trusted (0.95)."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    train_rows, test_rows = order[:500], order[500:]
    labels = y[train_rows].copy()
    low = rng.random(500) < 0.4
    wrong = low & (rng.random(500) < 0.7)
    labels[wrong] = (labels[wrong] + rng.integers(1, 10, wrong.sum())) % 10
    policy = default_governance() if governed else common_pb2.GovernancePolicy()
    trust = [LabelTrust(0.5 if lo else 0.95, common_pb2.LABEL_SOURCE_HUMAN) for lo in low]
    depth = torch.from_numpy(influence_depths(policy, trust, 3))
    torch.manual_seed(seed)
    model = build(ModelSpec("mlp", CLASSES, input_dim=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x[train_rows]), torch.from_numpy(labels).long()
    for epoch in range(100):
        batches = np.random.default_rng(seed * 1000 + epoch).permutation(500)
        for b in range(0, 500, 64):
            i = batches[b : b + 64]
            governed_step(model, optimizer, (xs[i],), ys[i], depth[i])
    predicted = analysis.logits_of(model, (torch.from_numpy(x[test_rows]),)).argmax(1).numpy()
    return float((predicted == y[test_rows]).mean())


def test_governed_training_beats_ungoverned_when_noise_sits_in_low_consensus_labels() -> None:
    seeds = range(5)
    governed = [noisy_digits_accuracy(s, governed=True) for s in seeds]
    ungoverned = [noisy_digits_accuracy(s, governed=False) for s in seeds]
    print(
        f"held-out accuracy: governed {np.mean(governed):.3f} {np.round(governed, 3)}, "
        f"ungoverned {np.mean(ungoverned):.3f} {np.round(ungoverned, 3)}"
    )
    assert np.mean(governed) >= np.mean(ungoverned)
    assert sum(g >= u for g, u in zip(governed, ungoverned, strict=True)) >= 4
