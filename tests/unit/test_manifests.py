"""The Kubernetes manifests, rendered by kustomize and checked offline (make k8s-validate)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from strata.cli.main import config_classes
from strata.cli.stack import SERVICES
from strata.common.config import describe
from strata.ops import manifests as m

RULES = m.REPO / "deploy" / "prometheus" / "rules"
Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Objects]:
    command = m.kustomize_command(m.REPO / ".venv" / "tools")
    return {o: m.render(command, m.REPO / "k8s" / "overlays" / o) for o in m.OVERLAYS}


@pytest.fixture(scope="module")
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    return m.load_crd_schemas(m.REPO / "k8s" / "schemas")


def of_kind(objects: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_every_overlay_passes_schemas_and_rules(rendered, crds) -> None:
    for overlay, objects in rendered.items():
        assert m.check_objects(objects, crds, RULES) == [], overlay
        assert all(o["metadata"].get("namespace") in {"strata", None} for o in objects)
        assert len(of_kind(objects, "Deployment")) == len(SERVICES)


def test_dev_is_one_of_each_and_prod_scales_out(rendered) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    assert {d["spec"]["replicas"] for d in of_kind(dev, "Deployment").values()} == {1}
    assert [p["spec"]["replicas"] for p in of_kind(dev, "KafkaNodePool").values()] == [1]
    assert of_kind(dev, "Cluster")["strata-pg"]["spec"]["instances"] == 1
    assert not of_kind(dev, "NetworkPolicy") and not of_kind(dev, "KafkaUser")

    assert set(of_kind(prod, "HorizontalPodAutoscaler")) == {"strata-gateway", "strata-inference"}
    quality = of_kind(prod, "ScaledObject")["strata-quality"]["spec"]
    assert "strata_quality_consumer_lag_messages" in quality["triggers"][0]["metadata"]["query"]
    assert quality["maxReplicaCount"] == 6  # the partitions of strata.labels.submitted
    kafka = of_kind(prod, "Kafka")["strata-kafka"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    pools = of_kind(prod, "KafkaNodePool").values()
    assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) == 3
    pg = of_kind(prod, "Cluster")["strata-pg"]["spec"]
    assert pg["instances"] == 3 and pg["postgresql"]["synchronous"]["number"] >= 1
    assert {r["passwordSecret"]["name"] for r in pg["managed"]["roles"]} == {
        f"strata-pg-{s}" for s in SERVICES
    }
    assert set(of_kind(prod, "KafkaUser")) == {f"strata-{s}" for s in SERVICES}
    for name, dep in of_kind(prod, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"], name
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["STRATA_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
    ray = of_kind(prod, "RayCluster")["strata-ray"]["spec"]
    assert ray["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert ray["workerGroupSpecs"][0]["maxReplicas"] > ray["workerGroupSpecs"][0]["minReplicas"]
    gpu = of_kind(rendered["prod-gpu"], "RayCluster")["strata-ray"]["spec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in gpu] == ["cpu", "gpu"]
    assert gpu[1]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        node = obj
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


CONTAINER = ["spec", "template", "spec", "containers", 0]


@pytest.mark.parametrize(
    ("kind", "change", "expected"),
    [
        ("Deployment", _set([*CONTAINER, "imagePullPolicyy"], "Always"), "'imagePullPolicyy'"),
        ("Kafka", _set(["spec", "kafka", "listner"], []), "'listner' was unexpected"),
        ("Kafka", _set(["spec", "kafka", "listeners", 0, "type"], "internl"), "'internl'"),
        ("KafkaTopic", _set(["spec", "partitions"], 2), "partitions, the catalog says"),
        ("Cluster", _set(["spec", "postgresql", "synchronous", "method"], "all"), "'all'"),
        (
            "RayCluster",
            _set(["spec", "headGroupSpec", "rayStartParams", "num-cpus"], 0),
            "is not of type 'string'",
        ),
        (
            "RayCluster",
            _set(["spec", "headGroupSpec", "template", "spec", "containers", 0, "imagee"], "x"),
            "pod template",
        ),
        (
            "Deployment",
            _set([*CONTAINER, "securityContext", "readOnlyRootFilesystem"], False),
            "root filesystem must be read-only",
        ),
        ("Deployment", _set([*CONTAINER, "resources"], {}), "resources.requests needs cpu"),
        (
            "Deployment",
            _set([*CONTAINER, "readinessProbe"], {"tcpSocket": {"port": 50051}}),
            "grpc",
        ),
        ("PodDisruptionBudget", _set(["spec", "selector", "matchLabels"], {"a": "b"}), "no PodDis"),
        ("PrometheusRule", _set(["spec", "groups"], []), "run `make k8s-rules`"),
        ("ScaledObject", _set(["spec", "scaleTargetRef", "name"], "strata-qualty"), "not in the"),
        ("NetworkPolicy", _set(["spec", "policyType"], ["Ingress"]), "'policyType'"),
        ("ServiceMonitor", _set(["kind"], "ServiceMonitr"), "no schema for"),
    ],
)
def test_the_validator_names_each_mistake(rendered, crds, kind, change, expected) -> None:
    objects = copy.deepcopy(rendered["prod"])
    change(next(o for o in objects if o["kind"] == kind))
    problems = m.check_objects(objects, crds, RULES)
    assert any(expected in p for p in problems), problems


def test_secrets_the_operator_must_create_are_listed(rendered) -> None:
    assert m.external_secrets(rendered["prod"]) == sorted(
        ["strata-admin-token", "strata-models-s3", *(f"strata-pg-{s}" for s in SERVICES)]
    )


def test_openapi_schemas_become_strict_json_schemas() -> None:
    schema = m.openapi_to_json_schema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "params": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    )
    assert schema["additionalProperties"] is False
    assert schema["properties"]["port"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert schema["properties"]["config"] == {"type": "object"}
    assert schema["properties"]["params"]["additionalProperties"] == {"type": "string"}


def test_the_prometheus_rule_is_the_rule_files(tmp_path) -> None:
    target = tmp_path / "rule.yaml"
    m.write_prometheus_rule(RULES, target)
    assert target.read_text() == (m.REPO / "k8s" / "base" / "prometheus-rule.yaml").read_text()


def test_every_setting_the_manifests_pass_is_one_a_service_reads(rendered) -> None:
    known: set[str] = set()
    for cls in config_classes():
        for variable, _default, _help in describe(cls):
            known.update(variable.replace("{SERVICE}", s.upper()) for s in SERVICES)
    others = {"RAY_ADDRESS", "PGPASSWORD", "HOME", "MPLCONFIGDIR"}
    for objects in rendered.values():
        passed: set[str] = set()
        for cm in of_kind(objects, "ConfigMap").values():
            if re.fullmatch(r"strata-([a-z]+-)?config-[a-z0-9]+", cm["metadata"]["name"]):
                passed.update(cm["data"])
        for dep in of_kind(objects, "Deployment").values():
            passed.update(
                e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
            )
        unknown = {
            v for v in passed if v not in known and v not in others and not v.startswith("AWS_")
        }
        assert not unknown, unknown
    gateway = of_kind(rendered["prod"], "ConfigMap")
    env = next(c for n, c in gateway.items() if n.startswith("strata-gateway-config"))["data"]
    assert env["STRATA_GATEWAY_CONTRACTS_DIR"] == "/etc/strata/contracts"
