"""What a finished run says about its model and its labels (pure: tensors in, arrays out).

- `evaluate`: accuracy, loss, per-class accuracy and calibration on held-out gold.
- `depth_profiles`: per class and layer group, how confused the representation
  is: a linear probe is fitted on the training labels' activations out of each
  group and its predictions on held-out items are scored by their entropy
  (normalised to [0, 1]; 1 = the probe cannot tell the classes apart there).
- `memorization_flags`: labels the model fits although their neighbours in the
  model's own representation disagree, learned late or forgotten on the way.
- `tracin`: TracIn influence of each training label on one prediction, summed
  over saved checkpoints and split by layer group (each label counted only in
  the groups its gradient was allowed to reach).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from strata.inference.calibration import calibrate
from strata.models.families import GroupedModel
from strata.training.ledger import group_index, per_example_grads

Inputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Evaluation:
    n: int
    accuracy: float
    loss: float
    per_class_accuracy: dict[str, float]
    logits: NDArray[np.float32]
    ece_before: float
    ece_after: float
    temperature: float
    calibration_note: str


def logits_of(model: GroupedModel, inputs: Inputs) -> torch.Tensor:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(*inputs)
    finally:
        model.train(was)


def evaluate(
    model: GroupedModel, inputs: Inputs, targets: torch.Tensor, classes: Sequence[str]
) -> Evaluation:
    """The model on held-out items with known answers (empty: zeros, said in the note)."""
    if len(targets) == 0:
        return Evaluation(0, 0.0, 0.0, {}, np.zeros((0, len(classes)), np.float32), 0, 0, 1, "")
    logits = logits_of(model, inputs)
    pred = logits.argmax(1)
    per_class = {
        c: float((pred[targets == i] == i).float().mean())
        for i, c in enumerate(classes)
        if bool((targets == i).any())
    }
    raw = logits.numpy().astype(np.float32)
    cal = calibrate(raw, targets.numpy())
    return Evaluation(
        n=len(targets),
        accuracy=float((pred == targets).float().mean()),
        loss=float(F.cross_entropy(logits, targets)),
        per_class_accuracy=per_class,
        logits=raw,
        ece_before=cal.ece_before,
        ece_after=cal.ece_after,
        temperature=cal.temperature,
        calibration_note=cal.note,
    )


def group_activations(model: GroupedModel, inputs: Inputs) -> list[torch.Tensor]:
    """The output of each layer group, group 1 (the logits) first, flattened per item."""
    was = model.training
    model.eval()
    outs: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            stages = model.stages()
            h = stages[0](*inputs)
            outs.append(h)
            for stage in stages[1:]:
                h = stage(h)
                outs.append(h)
    finally:
        model.train(was)
    return [o.reshape(o.shape[0], -1) for o in reversed(outs)]


def _probe_probs(
    train_x: NDArray[np.float64],
    train_y: NDArray[np.int64],
    test_x: NDArray[np.float64],
    n_classes: int,
) -> NDArray[np.float64]:
    """A multinomial logistic probe fitted on (train_x, train_y), its probabilities on test_x."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(max_iter=300, C=1.0)
    probe.fit(scaler.transform(train_x), train_y)
    probs = np.zeros((len(test_x), n_classes))
    probs[:, probe.classes_] = probe.predict_proba(scaler.transform(test_x))
    return probs


def depth_profiles(
    model: GroupedModel,
    train_inputs: Inputs,
    train_targets: torch.Tensor,
    eval_inputs: Inputs,
    eval_targets: torch.Tensor,
    classes: Sequence[str],
    max_train: int = 2000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Class -> normalised probe entropy per layer group (index 0 = group 1).

    Classes with no held-out item, and groups whose probe cannot be fitted (one
    class in the training labels), are left out / NaN.
    """
    y = train_targets.numpy()
    if len(np.unique(y)) < 2 or len(eval_targets) == 0:
        return {}
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(y), size=min(max_train, len(y)), replace=False))
    train_acts = group_activations(model, _take(model, train_inputs, pick))
    eval_acts = group_activations(model, eval_inputs)
    ey = eval_targets.numpy()
    k = len(classes)
    out: dict[str, list[float]] = {c: [] for i, c in enumerate(classes) if (ey == i).any()}
    for tr, ev in zip(train_acts, eval_acts, strict=True):
        probs = _probe_probs(tr.numpy().astype(np.float64), y[pick], ev.numpy(), k)
        entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(1) / np.log(k)
        for i, c in enumerate(classes):
            if c in out:
                out[c].append(float(entropy[ey == i].mean()))
    return out


def _take(model: GroupedModel, inputs: Inputs, rows: NDArray[np.int64]) -> Inputs:
    if model.batched_inputs:
        index = torch.from_numpy(rows)
        return tuple(t[index] for t in inputs)
    parts = [model.example_inputs(inputs, int(i)) for i in rows]
    return _concat_bags(parts)


def _concat_bags(parts: Sequence[Inputs]) -> Inputs:
    """Single-example text-hash inputs (indices, offsets, weights) joined into one bag batch."""
    indices = torch.cat([p[0] for p in parts])
    lengths = torch.tensor([len(p[0]) for p in parts])
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)[:-1]])
    weights = torch.cat([p[2] for p in parts])
    return (indices, offsets, weights)


def neighbour_features(model: GroupedModel, inputs: Inputs) -> NDArray[np.float64]:
    """The representation memorization is judged in: out of group K (nearest the input)."""
    return group_activations(model, inputs)[-1].numpy().astype(np.float64)


@dataclass(frozen=True)
class Flag:
    index: int  # into the training labels
    reason: str
    score: float


def memorization_flags(
    features: NDArray[np.float64],
    targets: NDArray[np.int64],
    fitted: NDArray[np.bool_],
    correct_by_epoch: NDArray[np.bool_],
    k: int = 10,
    min_disagreement: float = 0.7,
) -> list[Flag]:
    """Labels the model fits only by memorizing.

    A label is flagged when the model fits it (`fitted`) but at least
    `min_disagreement` of its k nearest training neighbours in `features` (cosine)
    carry another class. Pass the activations out of the deepest layer group (see
    `neighbour_features`): the head memorizes, the input side generalizes, and
    governance keeps low-consensus labels from reshaping it. The score adds how late
    it was learned and how often it was forgotten (from `correct_by_epoch`,
    [epochs, n]), which the reason names.
    """
    n = len(targets)
    if n <= k:
        return []
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    disagree = np.zeros(n)
    for start in range(0, n, 1024):
        sims = unit[start : start + 1024] @ unit.T
        rows = np.arange(start, min(start + 1024, n))
        sims[rows - start, rows] = -np.inf  # not its own neighbour
        nearest = np.argpartition(-sims, k, axis=1)[:, :k]
        disagree[rows] = (targets[nearest] != targets[rows, None]).mean(1)
    epochs = correct_by_epoch.shape[0]
    # Learned: the first epoch from which it stayed correct; forgotten: correct -> wrong.
    stays = np.flip(np.cumprod(np.flip(correct_by_epoch, 0), 0), 0).astype(bool)
    learned = np.where(stays.any(0), stays.argmax(0), epochs)
    forgotten = (correct_by_epoch[:-1] & ~correct_by_epoch[1:]).sum(0) if epochs > 1 else 0
    late = learned / max(epochs, 1)
    flags = []
    for i in np.flatnonzero(fitted & (disagree >= min_disagreement)):
        parts = [f"{disagree[i]:.0%} of its {k} nearest training labels say otherwise"]
        if learned[i] >= epochs:
            parts.append("never stayed learned during training")
        elif late[i] >= 0.5:
            parts.append(f"learned late (epoch {int(learned[i]) + 1} of {epochs})")
        f = int(np.asarray(forgotten)[i]) if epochs > 1 else 0
        if f:
            parts.append(f"forgotten {f} time{'s' if f > 1 else ''}")
        score = float(disagree[i] * (0.5 + 0.5 * min(1.0, late[i] + 0.25 * f)))
        flags.append(Flag(int(i), "; ".join(parts), score))
    return sorted(flags, key=lambda fl: (-fl.score, fl.index))


@dataclass(frozen=True)
class Checkpoint:
    model: GroupedModel
    lr: float


def tracin(
    checkpoints: Sequence[Checkpoint],
    target_inputs: Inputs,
    target_class: int,
    train_inputs: Inputs,
    train_targets: torch.Tensor,
    depth: torch.Tensor,
    chunk: int = 256,
) -> NDArray[np.float64]:
    """[n_train, K]: per layer group, sum over checkpoints of lr * grad(train label) .
    grad(target at `target_class`). Positive supports that prediction, negative opposes
    it; a label contributes only in groups 1..depth[i] (the rest never learned from it)."""
    n = len(train_targets)
    k = len(checkpoints[0].model.layer_groups()) if checkpoints else 0
    out = np.zeros((n, k))
    for cp in checkpoints:
        groups = group_index(cp.model)
        target = per_example_grads(cp.model, target_inputs, torch.tensor([target_class]))
        for start in range(0, n, chunk):
            rows = np.arange(start, min(start + chunk, n))
            grads = per_example_grads(
                cp.model, _take(cp.model, train_inputs, rows), train_targets[rows]
            )
            for name, g in grads.items():
                out[rows, groups[name] - 1] += cp.lr * (g @ target[name][0]).double().numpy()
    reach = np.arange(1, k + 1)[None, :] <= depth.numpy()[:, None]
    return out * reach
