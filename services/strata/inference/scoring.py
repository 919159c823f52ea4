"""Scoring: a served model's calibrated view of a batch of items (pure, no I/O).

`score` runs one forward pass (plus MC-dropout passes when asked) and returns
arrays; `predictions` turns them into `Prediction` messages; `route_auto_accept`
decides which confident predictions are proposed as MODEL labels and which of
those go to a human spot check instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from strata.inference.calibration import AutoAcceptGate
from strata.models.artifact import LoadedModel
from strata.models.families import InputError, featurize
from strata.v1 import common_pb2


@dataclass(frozen=True)
class Served:
    """A model version as one replica serves it."""

    project: str
    version: str
    generation: int
    loaded: LoadedModel
    temperature: float
    calibrated: bool
    # Calibrated confidence and correctness on gold: auto-accept's measured precision.
    gold_confidence: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    gold_correct: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def classes(self) -> list[str]:
        return list(self.loaded.spec.classes)


@dataclass
class Scores:
    logits: NDArray[np.float32]
    probs: NDArray[np.float64]  # calibrated
    raw_confidence: NDArray[np.float64]
    embeddings: NDArray[np.float32] | None
    mc: NDArray[np.float32] | None  # [samples, n, classes]

    def take(self, start: int, stop: int) -> Scores:
        """The scores of items start..stop-1."""
        return Scores(
            self.logits[start:stop],
            self.probs[start:stop],
            self.raw_confidence[start:stop],
            self.embeddings[start:stop] if self.embeddings is not None else None,
            self.mc[:, start:stop] if self.mc is not None else None,
        )

    @property
    def confidence(self) -> NDArray[np.float64]:
        return self.probs.max(axis=1)

    @property
    def entropy(self) -> NDArray[np.float64]:
        p = np.clip(self.probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1)  # type: ignore[no-any-return]

    @property
    def margin(self) -> NDArray[np.float64]:
        top2 = np.sort(self.probs, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]  # type: ignore[no-any-return]


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def score(
    served: Served,
    contents: Sequence[common_pb2.ItemContent],
    *,
    embeddings: bool = True,
    mc_samples: int = 0,
) -> Scores:
    """Calibrated scores of `contents`; InputError when one cannot be featurized."""
    inputs = featurize(served.loaded.spec, contents)
    model = served.loaded.model
    with torch.inference_mode():
        features = model.features(*inputs)
        logits = model.head(features).double().numpy()
        mc = None
        if mc_samples > 0:
            mc = np.stack([_softmax(z) for z in _mc_logits(model, inputs, mc_samples)])
    return Scores(
        logits=logits.astype(np.float32),
        probs=_softmax(logits / served.temperature),
        raw_confidence=_softmax(logits).max(axis=1),
        embeddings=features.numpy() if embeddings else None,
        mc=mc.astype(np.float32) if mc is not None else None,
    )


def _mc_logits(
    model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], samples: int
) -> list[NDArray[np.float64]]:
    """Logits with dropout left on (MC dropout), the rest of the model in eval mode."""
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in dropouts:
        m.train()
    try:
        return [model(*inputs).double().numpy() for _ in range(samples)]
    finally:
        for m in dropouts:
            m.eval()


def score_tolerant(
    served: Served,
    contents: Sequence[common_pb2.ItemContent],
    *,
    embeddings: bool = True,
    mc_samples: int = 0,
) -> tuple[list[int], Scores | None, dict[int, str]]:
    """Score what the model can take: (indices scored, their scores, index -> why not)."""
    try:
        return (
            list(range(len(contents))),
            score(served, contents, embeddings=embeddings, mc_samples=mc_samples),
            {},
        )
    except InputError:
        pass
    good: list[int] = []
    bad: dict[int, str] = {}
    for i, content in enumerate(contents):
        try:
            featurize(served.loaded.spec, [content])
            good.append(i)
        except InputError as exc:
            bad[i] = str(exc).removeprefix("item 0: ")
    if not good:
        return [], None, bad
    scores = score(
        served, [contents[i] for i in good], embeddings=embeddings, mc_samples=mc_samples
    )
    return good, scores, bad


def route_auto_accept(
    confidence: NDArray[np.float64],
    gate: AutoAcceptGate | None,
    policy: common_pb2.AutoAcceptPolicy | None,
    rng: random.Random,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(auto_accept, spot_check) per item: confident items are proposed as MODEL labels
    while the gate is open; a `spot_check_rate` share of them goes to humans instead."""
    n = confidence.shape[0]
    none = np.zeros(n, dtype=bool)
    if gate is None or policy is None or not policy.enabled or not gate.open:
        return none, none.copy()
    confident = confidence >= policy.confidence_threshold
    drawn = np.asarray([rng.random() < policy.spot_check_rate for _ in range(n)], dtype=bool)
    return confident & ~drawn, confident & drawn


def predictions(
    served: Served,
    item_ids: Sequence[str],
    scores: Scores,
    auto_accept: NDArray[np.bool_] | None = None,
    spot_check: NDArray[np.bool_] | None = None,
) -> list[common_pb2.Prediction]:
    classes = served.classes
    conf, entropy, margin = scores.confidence, scores.entropy, scores.margin
    best = scores.probs.argmax(axis=1)
    out = []
    for i, item_id in enumerate(item_ids):
        p = common_pb2.Prediction(
            item_id=item_id,
            model_version=served.version,
            project=served.project,
            classes=classes,
            probabilities=scores.probs[i].tolist(),
            predicted_class=classes[int(best[i])],
            confidence=float(conf[i]),
            calibrated=served.calibrated,
            raw_confidence=float(scores.raw_confidence[i]),
            entropy=float(entropy[i]),
            margin=float(margin[i]),
            auto_accept=bool(auto_accept[i]) if auto_accept is not None else False,
            spot_check=bool(spot_check[i]) if spot_check is not None else False,
        )
        if scores.embeddings is not None:
            p.embedding.extend(scores.embeddings[i].tolist())
        if scores.mc is not None:
            for sample in scores.mc[:, i, :]:
                p.mc_samples.add(probabilities=sample.tolist())
        out.append(p)
    return out
