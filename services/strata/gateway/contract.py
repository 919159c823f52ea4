"""The labeling contract: parsed from YAML or JSON, validated field by field.

A contract document looks like this (every section but `project`, `version`
and `classes` has a default)::

    project: digits
    version: "2026-11-01"
    classes:
      - name: "7"
        definition: A seven, with or without a crossbar.
        examples: {positive: [...], negative: [...]}
    edge_cases: [{case: "crossed 7 vs 1", ruling: "crossbar means 7"}]
    overlap: {min: 3, max: 5}
    consensus_threshold: 0.8
    gold: {rate: 0.1, accuracy_threshold: 0.8, probation: {tasks: 12, rate: 0.5},
           honeypot_rate: 0.25, max_anchoring: 0.5}
    agreement: {metric: krippendorff_alpha, threshold: 0.6}
    active_learning: {retrain_every: 200, batch_size: 64, strategy: margin}
    auto_accept: {enabled: false, confidence_threshold: 0.98, min_precision: 0.99,
                  spot_check_rate: 0.05}
    governance:
      mode: learned          # the default: depth and scale from the trust curve on gold
      rules:                 # mode: rules (the default once rules are given): the first
                             # rule that matches a label decides
        - {source: expert, depth: all}
        - {min_consensus_score: 0.9, depth: all}
        - {min_consensus_score: 0.7, depth: 2, scale: 0.5}   # or per group: [1, 0.3]
        - {depth: 1}
    prelabels: {show: true}
    lease_seconds: 600
    budget: {labels: 2000, target_accuracy: 0.9}
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from strata.v1 import common_pb2

MAX_DOCUMENT_BYTES = 1_000_000
MAX_CLASSES = 10_000
MAX_CLASS_NAME = 128
AGREEMENT_METRICS = ("krippendorff_alpha", "fleiss_kappa", "cohen_kappa")
SAMPLING_STRATEGIES = ("least_confidence", "margin", "entropy", "bald", "random")
SOURCES = {
    "any": common_pb2.LABEL_SOURCE_UNSPECIFIED,
    "human": common_pb2.LABEL_SOURCE_HUMAN,
    "model": common_pb2.LABEL_SOURCE_MODEL,
    "weak": common_pb2.LABEL_SOURCE_WEAK,
    "expert": common_pb2.LABEL_SOURCE_EXPERT,
}
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,62}$")


class ContractError(ValueError):
    """A contract document that cannot be loaded; `field` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ContractError(field, "must be a mapping")
    return value


def _known_keys(section: Mapping[str, Any], field: str, allowed: set[str]) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        prefix = f"{field}." if field else ""
        raise ContractError(
            f"{prefix}{unknown[0]}", f"unknown field; expected one of {', '.join(sorted(allowed))}"
        )


def _number(
    section: Mapping[str, Any],
    key: str,
    field: str,
    default: float,
    low: float,
    high: float,
    cast: Callable[[Any], float] = float,
) -> float:
    raw = section.get(key, default)
    name = f"{field}.{key}" if field else key
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ContractError(name, f"must be a number, got {raw!r}")
    if cast is int and raw != int(raw):
        raise ContractError(name, f"must be a whole number, got {raw!r}")
    value = cast(raw)
    if not low <= value <= high:
        raise ContractError(name, f"must be between {low:g} and {high:g}, got {raw!r}")
    return value


def _text(section: Mapping[str, Any], key: str, field: str, default: str = "") -> str:
    raw = section.get(key, default)
    name = f"{field}.{key}" if field else key
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise ContractError(name, f"must be text, got {raw!r}")
    return raw.strip()


def _text_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ContractError(field, "must be a list of text")
    return [str(v) for v in value]


def _bool(section: Mapping[str, Any], key: str, field: str, default: bool) -> bool:
    raw = section.get(key, default)
    if not isinstance(raw, bool):
        raise ContractError(f"{field}.{key}", f"must be true or false, got {raw!r}")
    return raw


def load_document(document: str) -> Mapping[str, Any]:
    """YAML (a superset of JSON) text to a mapping."""
    if not document.strip():
        raise ContractError("document", "is empty; send the contract as YAML or JSON text")
    if len(document.encode()) > MAX_DOCUMENT_BYTES:
        raise ContractError("document", f"is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ContractError("document", f"is not valid YAML or JSON{where}") from exc
    if not isinstance(data, Mapping):
        raise ContractError("document", "must be a mapping with project, version and classes")
    return data


def _classes(raw: Any) -> list[common_pb2.ClassDefinition]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise ContractError("classes", "must list at least two classes")
    if len(raw) > MAX_CLASSES:
        raise ContractError("classes", f"has more than {MAX_CLASSES} classes")
    out: list[common_pb2.ClassDefinition] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        field = f"classes[{i}]"
        if isinstance(entry, str | int):
            entry = {"name": str(entry)}
        entry = _mapping(entry, field)
        _known_keys(entry, field, {"name", "definition", "examples"})
        name = _text(entry, "name", field)
        if not name:
            raise ContractError(f"{field}.name", "is required")
        if len(name) > MAX_CLASS_NAME:
            raise ContractError(f"{field}.name", f"is longer than {MAX_CLASS_NAME} characters")
        if name in seen:
            raise ContractError(f"{field}.name", f"duplicates class {name!r}")
        seen.add(name)
        examples = _mapping(entry.get("examples"), f"{field}.examples")
        _known_keys(examples, f"{field}.examples", {"positive", "negative"})
        out.append(
            common_pb2.ClassDefinition(
                name=name,
                definition=_text(entry, "definition", field),
                positive_examples=_text_list(
                    examples.get("positive"), f"{field}.examples.positive"
                ),
                negative_examples=_text_list(
                    examples.get("negative"), f"{field}.examples.negative"
                ),
            )
        )
    return out


def _depth(raw: Any, field: str) -> int:
    if raw == "all":
        return 0
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1 or raw > 64:
        raise ContractError(
            field, f"must be 'all' or a layer-group count from 1 to 64, got {raw!r}"
        )
    return int(raw)


GOVERNANCE_MODES = {
    "rules": common_pb2.GOVERNANCE_MODE_RULES,
    "learned": common_pb2.GOVERNANCE_MODE_LEARNED,
}


def _scales(raw: Any, field: str) -> tuple[float | None, list[float]]:
    """A rule's `scale`: one number for every group it reaches, or a list per group
    from the head. (gradient_scale, group_scales)."""
    if raw is None:
        return None, []
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if not 0.0 <= raw <= 1000.0:
            raise ContractError(field, f"must be from 0 (no effect) to 1000, got {raw!r}")
        return float(raw), []
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
    ):
        if not all(0.0 < v <= 1000.0 for v in raw):
            raise ContractError(
                field,
                "per-group scales must be above 0 and at most 1000 (to reach fewer groups, "
                f"lower the depth), got {raw!r}",
            )
        return None, [float(v) for v in raw]
    raise ContractError(
        field, f"must be a number or a list of numbers (one per group), got {raw!r}"
    )


def _governance(raw: Any) -> common_pb2.GovernancePolicy:
    section = _mapping(raw, "governance")
    _known_keys(section, "governance", {"rules", "mode"})
    mode_name = _text(section, "mode", "governance", "").lower()
    if mode_name and mode_name not in GOVERNANCE_MODES:
        raise ContractError("governance.mode", f"must be one of {', '.join(GOVERNANCE_MODES)}")
    rules_raw = section.get("rules")
    if rules_raw is None:
        # Default: trusted labels reach every layer group; doubtful ones only the head.
        policy = default_governance()
        if mode_name:
            policy.mode = GOVERNANCE_MODES[mode_name]
        return policy
    if not isinstance(rules_raw, list) or not rules_raw:
        raise ContractError("governance.rules", "must be a non-empty list of rules")
    rules = []
    for i, entry in enumerate(rules_raw):
        field = f"governance.rules[{i}]"
        rule = _mapping(entry, field)
        _known_keys(rule, field, {"min_consensus_score", "source", "depth", "gold", "scale"})
        source = _text(rule, "source", field, "any").lower()
        if source not in SOURCES:
            raise ContractError(f"{field}.source", f"must be one of {', '.join(SOURCES)}")
        if "depth" not in rule:
            raise ContractError(f"{field}.depth", "is required ('all' or a number of groups)")
        scale, group_scales = _scales(rule.get("scale"), f"{field}.scale")
        parsed = common_pb2.DepthRule(
            min_consensus_score=_number(rule, "min_consensus_score", field, 0.0, 0.0, 1.0),
            source=SOURCES[source],
            influence_depth=_depth(rule["depth"], f"{field}.depth"),
            gold=_bool(rule, "gold", field, False),
            group_scales=group_scales,
        )
        if scale is not None:
            parsed.gradient_scale = scale
        rules.append(parsed)
    policy = common_pb2.GovernancePolicy(rules=rules)
    policy.mode = GOVERNANCE_MODES[mode_name or "rules"]
    return policy


def default_governance() -> common_pb2.GovernancePolicy:
    """The learned policy (each label's depth and scale from its trust on gold: see
    `strata.training.governance`); its rules, for `mode: rules`: expert and
    high-consensus labels reach every group, the rest fewer."""
    rule = common_pb2.DepthRule
    return common_pb2.GovernancePolicy(
        mode=common_pb2.GOVERNANCE_MODE_LEARNED,
        rules=[
            rule(source=common_pb2.LABEL_SOURCE_EXPERT, influence_depth=0),
            rule(min_consensus_score=0.9, influence_depth=0),
            rule(min_consensus_score=0.7, influence_depth=2),
            rule(influence_depth=1),
        ],
    )


_TOP_LEVEL = {
    "project",
    "version",
    "classes",
    "edge_cases",
    "overlap",
    "consensus_threshold",
    "gold",
    "agreement",
    "active_learning",
    "auto_accept",
    "governance",
    "prelabels",
    "lease_seconds",
    "budget",
}


def parse_contract(document: str) -> common_pb2.LabelingContract:
    """Parse and validate a contract document; raises ContractError naming the field."""
    data = load_document(document)
    _known_keys(data, "", _TOP_LEVEL)
    project = _text(data, "project", "")
    if not _PROJECT.match(project):
        raise ContractError(
            "project", "is required: lower-case letters, digits, '_', '.', '-', at most 63"
        )
    version = _text(data, "version", "")
    if not _VERSION.match(version):
        raise ContractError(
            "version", "is required: letters, digits and '_.:+-', at most 63 (e.g. '2026-11-01')"
        )
    contract = common_pb2.LabelingContract(project=project, version=version)
    contract.classes.extend(_classes(data.get("classes")))

    for i, entry in enumerate(data.get("edge_cases") or []):
        field = f"edge_cases[{i}]"
        case = _mapping(entry, field)
        _known_keys(case, field, {"case", "ruling"})
        if not _text(case, "case", field) or not _text(case, "ruling", field):
            raise ContractError(field, "needs both 'case' and 'ruling'")
        contract.edge_cases.add(
            case=_text(case, "case", field), ruling=_text(case, "ruling", field)
        )

    overlap = _mapping(data.get("overlap"), "overlap")
    _known_keys(overlap, "overlap", {"min", "max"})
    o_min = int(_number(overlap, "min", "overlap", 3, 1, 50, int))
    o_max = int(_number(overlap, "max", "overlap", max(o_min, 5), 1, 50, int))
    if o_max < o_min:
        raise ContractError("overlap.max", f"must be at least overlap.min ({o_min}), got {o_max}")
    contract.overlap.min, contract.overlap.max = o_min, o_max
    contract.consensus_threshold = _number(data, "consensus_threshold", "", 0.8, 0.0, 1.0)

    gold = _mapping(data.get("gold"), "gold")
    _known_keys(
        gold, "gold", {"rate", "accuracy_threshold", "probation", "honeypot_rate", "max_anchoring"}
    )
    contract.gold_rate = _number(gold, "rate", "gold", 0.1, 0.0, 0.5)
    contract.gold_accuracy_threshold = _number(gold, "accuracy_threshold", "gold", 0.7, 0.0, 1.0)
    probation = _mapping(gold.get("probation"), "gold.probation")
    _known_keys(probation, "gold.probation", {"tasks", "rate"})
    contract.gold_probation_tasks = int(
        _number(probation, "tasks", "gold.probation", 0, 0, 10_000, int)
    )
    contract.gold_probation_rate = _number(
        probation, "rate", "gold.probation", max(0.5, contract.gold_rate), contract.gold_rate, 1.0
    )
    # Of the gold tasks that show a pre-label, this share shows a deliberately wrong one.
    contract.gold_honeypot_rate = _number(gold, "honeypot_rate", "gold", 0.25, 0.0, 1.0)
    # Agreeing with wrong pre-labels more often than this (lower bound) blocks; 0: off.
    contract.gold_max_anchoring = _number(gold, "max_anchoring", "gold", 0.5, 0.0, 1.0)

    agreement = _mapping(data.get("agreement"), "agreement")
    _known_keys(agreement, "agreement", {"metric", "threshold"})
    metric = _text(agreement, "metric", "agreement", "krippendorff_alpha")
    if metric not in AGREEMENT_METRICS:
        raise ContractError("agreement.metric", f"must be one of {', '.join(AGREEMENT_METRICS)}")
    contract.agreement.metric = metric
    contract.agreement.threshold = _number(agreement, "threshold", "agreement", 0.6, -1.0, 1.0)

    al = _mapping(data.get("active_learning"), "active_learning")
    _known_keys(al, "active_learning", {"retrain_every", "batch_size", "strategy"})
    contract.active_learning.retrain_every = int(
        _number(al, "retrain_every", "active_learning", 200, 1, 10_000_000, int)
    )
    contract.active_learning.batch_size = int(
        _number(al, "batch_size", "active_learning", 64, 1, 100_000, int)
    )
    strategy = _text(al, "strategy", "active_learning", "margin")
    if strategy not in SAMPLING_STRATEGIES:
        raise ContractError(
            "active_learning.strategy", f"must be one of {', '.join(SAMPLING_STRATEGIES)}"
        )
    contract.active_learning.strategy = strategy

    aa = _mapping(data.get("auto_accept"), "auto_accept")
    _known_keys(
        aa, "auto_accept", {"enabled", "confidence_threshold", "min_precision", "spot_check_rate"}
    )
    contract.auto_accept.enabled = _bool(aa, "enabled", "auto_accept", False)
    contract.auto_accept.confidence_threshold = _number(
        aa, "confidence_threshold", "auto_accept", 0.98, 0.0, 1.0
    )
    contract.auto_accept.min_precision = _number(aa, "min_precision", "auto_accept", 0.99, 0.0, 1.0)
    contract.auto_accept.spot_check_rate = _number(
        aa, "spot_check_rate", "auto_accept", 0.05, 0.0, 1.0
    )

    contract.governance.CopyFrom(_governance(data.get("governance")))

    prelabels = _mapping(data.get("prelabels"), "prelabels")
    _known_keys(prelabels, "prelabels", {"show"})
    contract.hide_prelabels = not _bool(prelabels, "show", "prelabels", True)
    contract.lease_seconds = int(_number(data, "lease_seconds", "", 600, 1, 7 * 86_400, int))

    budget = _mapping(data.get("budget"), "budget")
    _known_keys(budget, "budget", {"labels", "target_accuracy"})
    contract.budget.label_budget = int(_number(budget, "labels", "budget", 0, 0, 10**12, int))
    contract.budget.target_accuracy = _number(budget, "target_accuracy", "budget", 0.0, 0.0, 1.0)
    return contract


def contract_digest(contract: common_pb2.LabelingContract) -> str:
    """A stable fingerprint of what a contract says (not when it was loaded)."""
    copy = common_pb2.LabelingContract()
    copy.CopyFrom(contract)
    copy.ClearField("loaded_at")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def class_names(contract: common_pb2.LabelingContract) -> list[str]:
    """The contract's class names, in the contract's order."""
    return [c.name for c in contract.classes]
