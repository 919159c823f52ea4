"""The contract's governance policy: how deep and how strongly each label's gradient
reaches (pure).

A label's treatment is an influence depth d (groups 1..d learn from it) and a scale
per group reached (its share of the loss times the scale: 1 is full strength, 0 no
effect). `govern` gives both as a depth per label and a [labels, K] scale matrix,
zero past each label's depth, which `governed_step` applies exactly.

Rules mode: rules are tried in order; the first that matches a label decides. A rule
matches when the label's consensus score is at least `min_consensus_score`, its
source is the rule's (UNSPECIFIED: any), and, for `gold` rules, the item is gold.
Its depth (0: all K groups) and its scales (`group_scales`, else `gradient_scale`,
else 1) apply. A label no rule matches reaches the head only. An empty policy
governs nothing: every label reaches every group at full strength.

Learned mode: a label's trust t = P(right | its consensus score), read off the trust
curve quality fits on gold (`strata.common.trust`). Then, with C classes:
- scale m = (C t - 1) / (C - 1), clipped to [0, 1]: the share of the label's expected
  gradient that points at the true class when its mistakes spread over the other
  classes (a right label pulls its class up with weight t, a wrong one with
  (1 - t) / (C - 1) each). A label no better than chance (t <= 1/C) has no effect;
  a label surely right has full strength. Adam-family optimizers are blind to one
  scale for every label, so only differences in trust change the step.
- depth: every group when t >= 1/2, the head only otherwise. A label more likely
  wrong than right would, in the representation, build features for the wrong class
  more often than for its own; at the head it moves only the boundary, and by m.
Expert labels and labels on gold items reach every group at full strength.
`bench/governance.py` measures this rule against the alternatives
(docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from strata.common.trust import TrustCurve, fit
from strata.v1 import common_pb2

LEARNED = common_pb2.GOVERNANCE_MODE_LEARNED
FULL_DEPTH_TRUST = 0.5  # learned mode: trust from which a label reaches every group
NO_GOLD = fit([], [])  # learned mode's curve before quality fitted one

SOURCE_NAMES = {
    common_pb2.LABEL_SOURCE_UNSPECIFIED: "any",
    common_pb2.LABEL_SOURCE_HUMAN: "human",
    common_pb2.LABEL_SOURCE_MODEL: "model",
    common_pb2.LABEL_SOURCE_WEAK: "weak",
    common_pb2.LABEL_SOURCE_EXPERT: "expert",
}


class PolicyError(ValueError):
    """A governance policy that cannot apply to the model being trained."""


@dataclass(frozen=True)
class LabelTrust:
    """What the policy looks at for one training label."""

    consensus_score: float
    source: int  # common_pb2.LabelSource
    gold: bool = False


def check_policy(policy: common_pb2.GovernancePolicy, n_groups: int) -> None:
    """PolicyError naming the rule when a depth cannot apply to a model of `n_groups`."""
    for i, rule in enumerate(policy.rules):
        if rule.influence_depth < 0 or rule.influence_depth > n_groups:
            raise PolicyError(
                f"governance.rules[{i}] routes labels to depth {rule.influence_depth}, but the "
                f"model has {n_groups} layer groups (use 1..{n_groups}, or 'all')"
            )
        if not 0.0 <= rule.min_consensus_score <= 1.0:
            raise PolicyError(
                f"governance.rules[{i}].min_consensus_score must be in [0, 1], "
                f"got {rule.min_consensus_score}"
            )
        if rule.source not in SOURCE_NAMES:
            raise PolicyError(f"governance.rules[{i}].source {rule.source} is not a label source")
        if rule.HasField("gradient_scale") and not 0.0 <= rule.gradient_scale <= 1e3:
            raise PolicyError(
                f"governance.rules[{i}].gradient_scale must be in [0, 1000], "
                f"got {rule.gradient_scale}"
            )
        for g, value in enumerate(rule.group_scales, start=1):
            if not 0.0 < value <= 1e3:
                raise PolicyError(
                    f"governance.rules[{i}].group_scales[{g - 1}] (layer group {g}) must be "
                    f"in (0, 1000], got {value} (to reach fewer groups, lower the depth)"
                )


def _reach(
    policy: common_pb2.GovernancePolicy, label: LabelTrust, n_groups: int
) -> tuple[int, common_pb2.DepthRule | None]:
    """Rules mode: the groups (from the head) this label's gradient reaches, and the
    rule that decided it (None: no rules, every group; no rule matched, the head)."""
    if not policy.rules:
        return n_groups, None
    rule = _matching(policy, label)
    if rule is None:
        return 1, None
    return (n_groups if rule.influence_depth == 0 else min(rule.influence_depth, n_groups)), rule


def influence_depth(policy: common_pb2.GovernancePolicy, label: LabelTrust, n_groups: int) -> int:
    """The number of layer groups (from the head) this label's gradient reaches."""
    return _reach(policy, label, n_groups)[0]


def influence_depths(
    policy: common_pb2.GovernancePolicy, labels: Sequence[LabelTrust], n_groups: int
) -> NDArray[np.int64]:
    """`influence_depth` of every label (after `check_policy`)."""
    check_policy(policy, n_groups)
    return np.asarray([influence_depth(policy, t, n_groups) for t in labels], dtype=np.int64)


@dataclass(frozen=True)
class Governed:
    """What governance decided for a run's labels."""

    depths: NDArray[np.int64]  # [n]: groups 1..depth learn from label i (0: none)
    scales: NDArray[np.float32]  # [n, K]: label i's gradient scale in group g+1; 0 past depth


def _rule_scales(rule: common_pb2.DepthRule, depth: int, n_groups: int) -> NDArray[np.float32]:
    row = np.zeros(n_groups, dtype=np.float32)
    if rule.group_scales:
        listed = list(rule.group_scales)
        row[:depth] = [listed[min(g, len(listed) - 1)] for g in range(depth)]
    else:
        row[:depth] = rule.gradient_scale if rule.HasField("gradient_scale") else 1.0
    return row


def _matching(
    policy: common_pb2.GovernancePolicy, label: LabelTrust
) -> common_pb2.DepthRule | None:
    for rule in policy.rules:
        if rule.gold and not label.gold:
            continue
        if rule.source not in (common_pb2.LABEL_SOURCE_UNSPECIFIED, label.source):
            continue
        if label.consensus_score < rule.min_consensus_score:
            continue
        return rule
    return None


def learned_treatment(trust: NDArray[np.float64], n_classes: int, n_groups: int) -> Governed:
    """Learned mode's depth and scale for labels of these trusts (see the module)."""
    c = max(n_classes, 2)
    magnitude = np.clip((c * trust - 1.0) / (c - 1.0), 0.0, 1.0)
    depths = np.where(trust >= FULL_DEPTH_TRUST, n_groups, 1).astype(np.int64)
    depths[magnitude <= 0.0] = 0
    reach = np.arange(1, n_groups + 1)[None, :] <= depths[:, None]
    return Governed(depths, (reach * magnitude[:, None]).astype(np.float32))


def govern(
    policy: common_pb2.GovernancePolicy,
    labels: Sequence[LabelTrust],
    n_groups: int,
    n_classes: int,
    curve: TrustCurve | None = None,
) -> Governed:
    """Every label's depth and per-group scale under `policy` (PolicyError when it
    cannot apply to a model of `n_groups`). Learned mode reads trust off `curve`
    (None: no curve fitted yet: the fit of no gold, every label fully trusted)."""
    check_policy(policy, n_groups)
    n = len(labels)
    if policy.mode == LEARNED:
        trust = (curve or NO_GOLD)(np.asarray([t.consensus_score for t in labels]))
        out = learned_treatment(np.asarray(trust, dtype=np.float64), n_classes, n_groups)
        sure = [
            i for i, t in enumerate(labels) if t.gold or t.source == common_pb2.LABEL_SOURCE_EXPERT
        ]
        out.depths[sure] = n_groups
        out.scales[sure] = 1.0
        return out
    depths = np.zeros(n, dtype=np.int64)
    scales = np.zeros((n, n_groups), dtype=np.float32)
    for i, label in enumerate(labels):
        depth, rule = _reach(policy, label, n_groups)
        if rule is None:
            depths[i], scales[i, :depth] = depth, 1.0
            continue
        row = _rule_scales(rule, depth, n_groups)
        if not row.any():  # scale 0: the label has no effect, so it reaches nothing
            depth = 0
        depths[i], scales[i] = depth, row
    return Governed(depths, scales)
