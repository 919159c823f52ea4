"""Labeling contracts: what loads, and what is refused with the field named."""

import json

import pytest
from strata.gateway.contract import ContractError, contract_digest, parse_contract
from strata.v1 import common_pb2

FULL = """
project: digits
version: "2026-11-01"
classes:
  - name: "0"
    definition: A zero.
    examples: {positive: ["round"], negative: ["6 with a closed loop"]}
  - name: "1"
  - "2"
edge_cases:
  - {case: "crossed 7 vs 1", ruling: "a crossbar means 7"}
overlap: {min: 3, max: 5}
consensus_threshold: 0.85
gold: {rate: 0.1, accuracy_threshold: 0.75, probation: {tasks: 12, rate: 0.6}}
agreement: {metric: fleiss_kappa, threshold: 0.5}
active_learning: {retrain_every: 150, batch_size: 32, strategy: entropy}
auto_accept: {enabled: true, confidence_threshold: 0.97, min_precision: 0.98, spot_check_rate: 0.1}
governance:
  rules:
    - {source: expert, depth: all}
    - {min_consensus_score: 0.9, depth: all}
    - {min_consensus_score: 0.6, depth: 2}
    - {depth: 1}
prelabels: {show: false}
lease_seconds: 120
budget: {labels: 3000, target_accuracy: 0.9}
"""


def test_full_contract_loads_every_section() -> None:
    c = parse_contract(FULL)
    assert (c.project, c.version) == ("digits", "2026-11-01")
    assert [k.name for k in c.classes] == ["0", "1", "2"]
    assert c.classes[0].negative_examples == ["6 with a closed loop"]
    assert c.edge_cases[0].ruling == "a crossbar means 7"
    assert (c.overlap.min, c.overlap.max) == (3, 5)
    assert c.consensus_threshold == pytest.approx(0.85)
    assert c.gold_rate == pytest.approx(0.1) and c.gold_accuracy_threshold == pytest.approx(0.75)
    assert c.gold_probation_tasks == 12 and c.gold_probation_rate == pytest.approx(0.6)
    assert c.agreement.metric == "fleiss_kappa"
    assert c.active_learning.retrain_every == 150 and c.active_learning.strategy == "entropy"
    assert c.auto_accept.enabled and c.auto_accept.spot_check_rate == pytest.approx(0.1)
    rules = c.governance.rules
    assert rules[0].source == common_pb2.LABEL_SOURCE_EXPERT and rules[0].influence_depth == 0
    assert rules[2].min_consensus_score == pytest.approx(0.6) and rules[2].influence_depth == 2
    assert c.hide_prelabels and c.lease_seconds == 120
    assert c.budget.label_budget == 3000


def test_json_and_yaml_give_the_same_contract() -> None:
    doc = {"project": "p", "version": "1", "classes": ["cat", "dog"], "overlap": {"min": 2}}
    from_json = parse_contract(json.dumps(doc))
    from_yaml = parse_contract("project: p\nversion: '1'\nclasses: [cat, dog]\noverlap: {min: 2}\n")
    assert contract_digest(from_json) == contract_digest(from_yaml)
    assert from_json.overlap.max == 5  # defaults to max(min, 5)
    assert len(from_json.governance.rules) == 4  # the default policy
    assert from_json.gold_probation_tasks == 0  # no probation unless asked for


def test_governance_is_learned_by_default_and_rules_take_a_scale() -> None:
    base = "project: p\nversion: '1'\nclasses: [a, b]\n"
    assert parse_contract(base).governance.mode == common_pb2.GOVERNANCE_MODE_LEARNED
    ruled = parse_contract(
        base + "governance: {rules: [{min_consensus_score: 0.7, depth: 2, scale: 0.5}, "
        "{depth: all, scale: [1, 0.25]}, {depth: 1, scale: 0}]}"
    ).governance
    assert ruled.mode == common_pb2.GOVERNANCE_MODE_RULES  # rules given: they govern
    first, second, third = ruled.rules
    assert first.gradient_scale == 0.5 and not first.group_scales
    assert list(second.group_scales) == [1.0, 0.25] and not second.HasField("gradient_scale")
    assert third.HasField("gradient_scale") and third.gradient_scale == 0.0
    assert (
        not parse_contract(base + "governance: {rules: [{depth: 1}]}")
        .governance.rules[0]
        .HasField("gradient_scale")
    )
    kept = parse_contract(base + "governance: {mode: rules}").governance
    assert kept.mode == common_pb2.GOVERNANCE_MODE_RULES and len(kept.rules) == 4


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("", "document"),
        ("project: [unclosed", "document"),
        ("- just a list", "document"),
        ("version: '1'\nclasses: [a, b]", "project"),
        ("project: Bad Name\nversion: '1'\nclasses: [a, b]", "project"),
        ("project: p\nclasses: [a, b]", "version"),
        ("project: p\nversion: '1'\nclasses: [a]", "classes"),
        ("project: p\nversion: '1'\nclasses: [a, a]", "classes[1].name"),
        ("project: p\nversion: '1'\nclasses: [a, b]\noverlap: {min: 4, max: 2}", "overlap.max"),
        ("project: p\nversion: '1'\nclasses: [a, b]\noverlap: {min: 0}", "overlap.min"),
        ("project: p\nversion: '1'\nclasses: [a, b]\noverlap: {min: 2.5}", "overlap.min"),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\nconsensus_threshold: 1.5",
            "consensus_threshold",
        ),
        ("project: p\nversion: '1'\nclasses: [a, b]\ngold: {rate: yes}", "gold.rate"),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\nagreement: {metric: vibes}",
            "agreement.metric",
        ),
        ("project: p\nversion: '1'\nclasses: [a, b]\noverlapp: {min: 2}", "overlapp"),
        ("project: p\nversion: '1'\nclasses: [a, b]\ngold: {rat: 0.1}", "gold.rat"),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\ngold: {probation: {tasks: -1}}",
            "gold.probation.tasks",
        ),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\n"
            "gold: {rate: 0.2, probation: {tasks: 5, rate: 0.1}}",
            "gold.probation.rate",
        ),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\ngold: {probation: {task: 5}}",
            "gold.probation.task",
        ),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\ngovernance: {rules: [{depth: 0}]}",
            "governance.rules[0].depth",
        ),
        ("project: p\nversion: '1'\nclasses: [a, b]\ngovernance: {mode: wise}", "governance.mode"),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\n"
            "governance: {rules: [{depth: 2, scale: [1, 0]}]}",
            "governance.rules[0].scale",
        ),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\n"
            "governance: {rules: [{depth: 2, scale: -1}]}",
            "governance.rules[0].scale",
        ),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\n"
            "governance: {rules: [{source: crowd, depth: 1}]}",
            "governance.rules[0].source",
        ),
        ("project: p\nversion: '1'\nclasses: [a, b]\nprelabels: {show: maybe}", "prelabels.show"),
        (
            "project: p\nversion: '1'\nclasses: [a, b]\nactive_learning: {strategy: best}",
            "active_learning.strategy",
        ),
    ],
)
def test_invalid_contract_names_the_field(document: str, field: str) -> None:
    with pytest.raises(ContractError) as err:
        parse_contract(document)
    assert err.value.field == field
    assert str(err.value).startswith(field)


def test_digest_ignores_load_time_but_not_content() -> None:
    a = parse_contract("project: p\nversion: '1'\nclasses: [a, b]")
    b = parse_contract("project: p\nversion: '1'\nclasses: [a, b]")
    b.loaded_at.GetCurrentTime()
    c = parse_contract("project: p\nversion: '1'\nclasses: [a, c]")
    assert contract_digest(a) == contract_digest(b) != contract_digest(c)
