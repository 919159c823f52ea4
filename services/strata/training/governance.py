"""The contract's governance policy: how deep each label's gradient may reach (pure).

Rules are tried in order; the first that matches a label decides its influence
depth d (groups 1..d learn from it; 0 in a rule means all K groups). A rule
matches when the label's consensus score is at least `min_consensus_score`, its
source is the rule's (UNSPECIFIED: any), and, for `gold` rules, the item is gold.
A label no rule matches reaches the head only. An empty policy governs nothing:
every label reaches every group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from strata.v1 import common_pb2

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


def influence_depth(policy: common_pb2.GovernancePolicy, label: LabelTrust, n_groups: int) -> int:
    """The number of layer groups (from the head) this label's gradient reaches."""
    if not policy.rules:
        return n_groups
    for rule in policy.rules:
        if rule.gold and not label.gold:
            continue
        if rule.source not in (common_pb2.LABEL_SOURCE_UNSPECIFIED, label.source):
            continue
        if label.consensus_score < rule.min_consensus_score:
            continue
        return n_groups if rule.influence_depth == 0 else min(rule.influence_depth, n_groups)
    return 1


def influence_depths(
    policy: common_pb2.GovernancePolicy, labels: Sequence[LabelTrust], n_groups: int
) -> NDArray[np.int64]:
    """`influence_depth` of every label (after `check_policy`)."""
    check_policy(policy, n_groups)
    return np.asarray([influence_depth(policy, t, n_groups) for t in labels], dtype=np.int64)
