"""What a run trains on: the project's labels checked against its contract and governed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.common.trust import TrustCurve
from strata.models.families import MODALITY, InputError, ModelSpec, build, featurize
from strata.training import store
from strata.training.governance import LEARNED, NO_GOLD, LabelTrust, PolicyError, govern
from strata.v1 import common_pb2

FAMILY_FOR = {modality: family for family, modality in MODALITY.items()}


class RunRejected(Exception):
    """A run that cannot train on what the project has (said to the caller as is)."""


@dataclass(frozen=True)
class Dataset:
    spec: ModelSpec
    rows: list[store.TrainingRow]
    targets: np.ndarray  # type: ignore[type-arg]
    depths: np.ndarray  # type: ignore[type-arg]
    dropped: int  # labels whose class the contract no longer has
    # [n, K] each label's gradient scale per layer group (0 past its depth)
    scales: np.ndarray | None = None  # type: ignore[type-arg]
    curve: TrustCurve | None = None  # the trust curve learned governance applied


def prepare(
    rows: list[store.TrainingRow],
    contract: common_pb2.LabelingContract,
    family: str,
    min_labels: int,
    curve: TrustCurve | None = None,
) -> Dataset:
    """What a run trains on, or RunRejected saying why there is nothing to train (pure)."""
    classes = [c.name for c in contract.classes]
    index = {c: i for i, c in enumerate(classes)}
    kept = [r for r in rows if r.label.value in index]
    if len(kept) < min_labels:
        raise RunRejected(
            f"project {contract.project!r} has {len(kept)} accepted labels; a run needs at "
            f"least {min_labels} (STRATA_TRAINING_MIN_LABELS)"
        )
    values = {r.label.value for r in kept}
    if len(values) < 2:
        raise RunRejected(
            f"all {len(kept)} accepted labels are {next(iter(values))!r}: a classifier needs "
            "labels of at least two classes"
        )
    contents = [common_pb2.ItemContent.FromString(r.content) for r in kept]
    modalities = {c.WhichOneof("kind") for c in contents}
    if len(modalities) != 1:
        raise RunRejected(f"the labelled items mix content kinds {sorted(map(str, modalities))}")
    modality = next(iter(modalities))
    family = family or FAMILY_FOR.get(str(modality), "")
    if not family:
        raise RunRejected(f"no model family takes {modality} content")
    input_dim = len(contents[0].features.values) if modality == "features" else 0
    try:
        spec = ModelSpec(family, classes, input_dim=input_dim)
        model = build(spec)
        featurize(spec, contents[:1])
    except (ValueError, InputError) as exc:
        raise RunRejected(f"cannot build a {family} model for this project: {exc}") from None
    if modality == "features" and {len(c.features.values) for c in contents} != {input_dim}:
        raise RunRejected("the labelled feature vectors differ in length")
    trusts = [LabelTrust(r.label.consensus_score, r.label.source, r.gold) for r in kept]
    learned = contract.governance.mode == LEARNED
    try:
        governed = govern(
            contract.governance, trusts, len(model.layer_groups()), len(classes), curve
        )
    except PolicyError as exc:
        raise RunRejected(f"contract {contract.version}: {exc}") from None
    targets = np.asarray([index[r.label.value] for r in kept], dtype=np.int64)
    return Dataset(
        spec,
        kept,
        targets,
        governed.depths,
        len(rows) - len(kept),
        governed.scales,
        (curve or NO_GOLD) if learned else None,
    )
