"""The Kubernetes manifests, rendered by kustomize and checked offline (make k8s-validate)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from strata.cli.main import config_classes
from strata.cli.stack import SERVICES, WEB
from strata.common.config import describe
from strata.ops import manifests as m
from strata.web.config import WebConfig

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
        assert set(of_kind(objects, "Deployment")) == {f"strata-{s}" for s in (*SERVICES, WEB)}


def test_dev_is_one_of_each_and_prod_scales_out(rendered) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    assert {d["spec"]["replicas"] for d in of_kind(dev, "Deployment").values()} == {1}
    assert [p["spec"]["replicas"] for p in of_kind(dev, "KafkaNodePool").values()] == [1]
    assert of_kind(dev, "Cluster")["strata-pg"]["spec"]["instances"] == 1
    assert not of_kind(dev, "NetworkPolicy") and not of_kind(dev, "KafkaUser")

    hpas = of_kind(prod, "HorizontalPodAutoscaler")
    assert set(hpas) == {"strata-gateway", "strata-inference", "strata-web"}
    web = hpas["strata-web"]["spec"]
    assert (web["minReplicas"], web["maxReplicas"]) == (2, 10)
    assert web["metrics"][0]["resource"]["name"] == "cpu"
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
        env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
        if name == f"strata-{WEB}":  # no database, no Kafka: nothing to log in to
            assert not [v for v in env if v.startswith(("STRATA_KAFKA_", "STRATA_PG_", "PG"))]
            continue
        assert env["STRATA_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL", name
    ray = of_kind(prod, "RayCluster")["strata-ray"]["spec"]
    assert ray["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert ray["workerGroupSpecs"][0]["maxReplicas"] > ray["workerGroupSpecs"][0]["minReplicas"]
    gpu = of_kind(rendered["prod-gpu"], "RayCluster")["strata-ray"]["spec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in gpu] == ["cpu", "gpu"]
    assert gpu[1]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def _step(node: Any, key: Any) -> Any:
    # A list is indexed by position, or by a string: the item of that name.
    if isinstance(node, list) and isinstance(key, str):
        return next(item for item in node if item.get("name") == key)
    return node[key]


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        node = obj
        for key in path[:-1]:
            node = _step(node, key)
        node[path[-1]] = value

    return change


def _add(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        node = obj
        for key in path:
            node = _step(node, key)
        node.append(value)

    return change


CONTAINER = ["spec", "template", "spec", "containers", 0]
VOLUMES = ["spec", "template", "spec", "volumes"]
NGINX = "nginx.ingress.kubernetes.io"


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
            "Deployment/strata-sampler",
            _set([*CONTAINER, "readinessProbe"], {"tcpSocket": {"port": 50051}}),
            "grpc",
        ),
        # The gRPC services keep their grpc probes; only the web service answers HTTP ones.
        (
            "Deployment/strata-gateway",
            _set([*CONTAINER, "readinessProbe"], {"httpGet": {"path": "/readyz", "port": 8086}}),
            "Deployment/strata-gateway: readinessProbe must be a native grpc probe",
        ),
        (
            "Deployment/strata-web",
            _set([*CONTAINER, "readinessProbe"], {"grpc": {"port": 8086}}),
            "readinessProbe must be an httpGet of /readyz on its http port",
        ),
        (
            # Alive is not ready: a liveness probe on /readyz restarts every pod when the
            # gateway is away.
            "Deployment/strata-web",
            _set([*CONTAINER, "livenessProbe", "httpGet", "path"], "/readyz"),
            "livenessProbe must be an httpGet of /healthz on its http port",
        ),
        (
            "Deployment/strata-web",
            _set([*CONTAINER, "startupProbe", "httpGet", "port"], "metrics"),
            "startupProbe must be an httpGet of /healthz",
        ),
        (
            "Deployment/strata-web",
            _add([*CONTAINER, "ports"], {"name": "grpc", "containerPort": 50051}),
            "it has no gRPC port",
        ),
        ("PodDisruptionBudget", _set(["spec", "selector", "matchLabels"], {"a": "b"}), "no PodDis"),
        ("PrometheusRule", _set(["spec", "groups"], []), "run `make k8s-rules`"),
        ("ScaledObject", _set(["spec", "scaleTargetRef", "name"], "strata-qualty"), "not in the"),
        ("NetworkPolicy", _set(["spec", "policyType"], ["Ingress"]), "'policyType'"),
        ("ServiceMonitor", _set(["kind"], "ServiceMonitr"), "no schema for"),
        (
            "Certificate/strata-gateway",
            _set(["spec", "usages", 0], "serverauth"),
            "'serverauth' is not one of",
        ),
        ("Certificate/strata-gateway", _set(["spec", "duration"], "90d"), "does not match"),
        ("Issuer", _set(["spec", "selfSigend"], {}), "'selfSigend' was unexpected"),
        # Mutual TLS on every hop: the certificate, its identity, the mode, the probes.
        (
            "Deployment/strata-sampler",
            _set([*VOLUMES, "tls", "secret", "secretName"], "strata-sampler-tls-by-hand"),
            "mounts no TLS secret that a Certificate in the render makes",
        ),
        (
            "Deployment/strata-sampler",
            _set([*VOLUMES, "tls", "secret", "secretName"], "strata-gateway-tls"),
            "mounts Certificate/strata-gateway, whose uris are not",
        ),
        (
            "Deployment/strata-sampler",
            _set([*CONTAINER, "volumeMounts", "tls", "readOnly"], False),
            "mounted read-only",
        ),
        (
            "Deployment/strata-quality",
            _add([*CONTAINER, "env"], {"name": "STRATA_TLS_MODE", "value": "plaintext"}),
            "Deployment/strata-quality: sets STRATA_TLS_MODE=plaintext",
        ),
        (
            "ConfigMap/strata-config",
            _set(["data", "STRATA_TLS_MODE"], "Plaintext"),
            "sets STRATA_TLS_MODE=plaintext",
        ),
        (
            "ConfigMap/strata-config",
            _set(["data", "STRATA_TLS_CA"], "/etc/ssl/certs/ca.crt"),
            "must name files of a mounted TLS secret",
        ),
        (
            "Deployment/strata-gateway",
            _set([*CONTAINER, "livenessProbe", "grpc", "port"], 50051),
            "livenessProbe must ask the health port 8086",
        ),
        (
            "ConfigMap/strata-gateway-config",
            _set(["data", "STRATA_GATEWAY_HEALTH_PORT"], "8087"),
            "STRATA_GATEWAY_HEALTH_PORT must be 8086",
        ),
        (
            "ConfigMap/strata-gateway-config",
            _set(["data", "STRATA_SAMPLER_ADDRESS"], "10.0.3.7:50051"),
            "no Certificate in the render carries 10.0.3.7",
        ),
        (
            "Ingress/strata-gateway",
            _set(["metadata", "annotations", f"{NGINX}/proxy-ssl-secret"], "strata/strata-ca"),
            "proxy-ssl-secret must be the secret of a Certificate",
        ),
        (
            "Ingress/strata-gateway",
            _set(["metadata", "annotations", f"{NGINX}/backend-protocol"], "GRPC"),
            "backend-protocol must be GRPCS",
        ),
        # The gateway's Ingress may not pass for a browsers' one by speaking HTTP.
        (
            "Ingress/strata-gateway",
            _set(["metadata", "annotations", f"{NGINX}/backend-protocol"], "HTTP"),
            "backend-protocol must be GRPCS",
        ),
        # The web service: its own identity, names its certificates carry, a TLS Ingress.
        (
            "Deployment/strata-web",
            _set([*VOLUMES, "tls", "secret", "secretName"], "strata-gateway-tls"),
            "mounts Certificate/strata-gateway, whose uris are not ['spiffe://strata/service/web']",
        ),
        (
            "Deployment/strata-web",
            _set([*CONTAINER, "env"], [{"name": "STRATA_TLS_MODE", "value": "plaintext"}]),
            "Deployment/strata-web: sets STRATA_TLS_MODE=plaintext",
        ),
        (
            "ConfigMap/strata-web-config",
            _set(["data", "STRATA_TRAINING_ADDRESS"], "10.0.3.7:50051"),
            "Deployment/strata-web: STRATA_TRAINING_ADDRESS=10.0.3.7:50051: no Certificate",
        ),
        (
            "Ingress/strata-web",
            _set(["metadata", "annotations", f"{NGINX}/backend-protocol"], "GRPCS"),
            "Ingress/strata-web: backend-protocol must be HTTP",
        ),
        ("Ingress/strata-web", _set(["spec", "tls"], []), "must end the browsers' TLS"),
    ],
)
def test_the_validator_names_each_mistake(rendered, crds, kind, change, expected) -> None:
    objects = copy.deepcopy(rendered["prod"])
    kind, _, name = kind.partition("/")
    change(next(o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)))
    problems = m.check_objects(objects, crds, RULES)
    assert any(expected in p for p in problems), problems


def test_an_overlay_with_network_policies_leaves_no_ray_pod_open(rendered, crds) -> None:
    ray = {"ray.io/cluster": "strata-ray", "ray.io/node-type": "worker", "ray.io/group": "cpu"}
    objects = [
        o
        for o in rendered["prod-gpu"]
        if not (o["kind"] == "NetworkPolicy" and m.selects(o["spec"]["podSelector"], ray))
    ]
    problems = m.check_objects(objects, crds, RULES)
    for group in ("head", "cpu", "gpu"):
        assert f"RayCluster/strata-ray {group}: no NetworkPolicy limits its ingress" in " ".join(
            problems
        )


def admits(
    policies: Objects, to: dict[str, str], port: int, source: dict[str, str], namespace: str
) -> bool:
    """Whether the NetworkPolicies of namespace strata let a pod (labels `source`, in
    `namespace`) connect to the pod with labels `to` on `port`."""
    isolating = [
        p
        for p in policies
        if "Ingress" in m.policy_types(p) and m.selects(p["spec"]["podSelector"], to)
    ]
    if not isolating:
        return True
    for rule in (r for p in isolating for r in p["spec"].get("ingress", [])):
        if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
            continue
        for peer in rule.get("from", [{"namespaceSelector": {}}]):
            ns = {"kubernetes.io/metadata.name": namespace}
            in_namespace = (
                m.selects(peer["namespaceSelector"], ns)
                if "namespaceSelector" in peer
                else namespace == "strata"
            )
            if in_namespace and m.selects(peer.get("podSelector", {}), source):
                return True
    return False


def sends(
    policies: Objects, source: dict[str, str], port: int, to: dict[str, str], namespace: str
) -> bool:
    """Whether the NetworkPolicies of namespace strata let a pod of it (labels `source`)
    connect to a pod (labels `to`, in `namespace`) on `port`."""
    isolating = [
        p
        for p in policies
        if "Egress" in m.policy_types(p) and m.selects(p["spec"]["podSelector"], source)
    ]
    if not isolating:
        return True
    for rule in (r for p in isolating for r in p["spec"].get("egress", [])):
        if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
            continue
        for peer in rule.get("to", [{"namespaceSelector": {}}]):
            ns = {"kubernetes.io/metadata.name": namespace}
            in_namespace = (
                m.selects(peer["namespaceSelector"], ns)
                if "namespaceSelector" in peer
                else namespace == "strata"
            )
            if in_namespace and m.selects(peer.get("podSelector", {}), to):
                return True
    return False


def test_only_training_reaches_ray_and_only_the_ingress_controller_the_gateway(rendered) -> None:
    objects = rendered["prod-gpu"]
    policies = list(of_kind(objects, "NetworkPolicy").values())
    pods = dict(p for o in objects for p in m.pod_labels(o))
    head, gpu = pods["RayCluster/strata-ray head"], pods["RayCluster/strata-ray gpu"]
    training = pods["Deployment/strata-training"]

    assert admits(policies, head, 10001, training, "strata")
    for name, labels in pods.items():
        if not name.startswith(("Deployment/strata-training", "RayCluster/")):
            for port in (10001, 6379, 8265, 8080):
                assert not admits(policies, head, port, labels, "strata"), (name, port)
    for port in (6379, 8265, 10001, 41234):  # Ray nodes talk to each other on many ports
        assert admits(policies, head, port, gpu, "strata")
        assert admits(policies, gpu, port, head, "strata")
    assert admits(policies, gpu, 8080, {}, "monitoring")
    assert not admits(policies, head, 10001, {}, "monitoring")
    assert not admits(policies, head, 8265, {}, "ray-system")  # no RayJob: no operator calls
    for namespace in ("ingress-nginx", "default"):
        assert not admits(policies, head, 10001, {}, namespace)
        can_reach_gateway = admits(
            policies, pods["Deployment/strata-gateway"], 50051, {}, namespace
        )
        assert can_reach_gateway == (namespace == "ingress-nginx")
        assert not admits(policies, pods["Deployment/strata-sampler"], 50051, {}, namespace)
    ray = of_kind(objects, "RayCluster")["strata-ray"]["spec"]
    assert ray["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"


def test_the_web_is_reached_through_the_ingress_controller_and_reaches_only_the_services(
    rendered,
) -> None:
    objects = rendered["prod"]
    policies = list(of_kind(objects, "NetworkPolicy").values())
    pods = dict(p for o in objects for p in m.pod_labels(o))
    web = pods["Deployment/strata-web"]
    # In: browsers through the ingress controller, Prometheus on the metrics port; no pod of
    # Strata's own namespace or any other.
    assert admits(policies, web, 8080, {}, "ingress-nginx")
    assert admits(policies, web, 9464, {}, "monitoring")
    assert not admits(policies, web, 8080, {}, "monitoring")
    assert not admits(policies, web, 8080, {}, "default")
    for name, labels in pods.items():
        assert not admits(policies, web, 8080, labels, "strata"), name
    # Out: DNS and each service's gRPC port, which admits the web as a caller.
    assert sends(policies, web, 53, {"k8s-app": "kube-dns"}, "kube-system")
    for service in SERVICES:
        target = pods[f"Deployment/strata-{service}"]
        assert sends(policies, web, 50051, target, "strata"), service
        assert admits(policies, target, 50051, web, "strata"), service
        assert not sends(policies, web, 8086, target, "strata"), service  # the health port
    # Not Postgres, not Kafka, not Ray, not the internet; the services still reach them.
    postgres = {"cnpg.io/cluster": "strata-pg", "cnpg.io/instanceRole": "primary"}
    kafka = {"strimzi.io/cluster": "strata-kafka", "strimzi.io/kind": "Kafka"}
    head = pods["RayCluster/strata-ray head"]
    for to, port in [(postgres, 5432), (kafka, 9092), (kafka, 9093), (head, 10001)]:
        assert not sends(policies, web, port, to, "strata"), (to, port)
    assert not sends(policies, web, 443, {}, "default")
    gateway = pods["Deployment/strata-gateway"]
    assert sends(policies, gateway, 5432, postgres, "strata")
    assert sends(policies, gateway, 9093, kafka, "strata")
    assert sends(policies, pods["Deployment/strata-training"], 10001, head, "strata")


def test_the_web_believes_forwarded_headers_only_behind_its_network_policy(rendered) -> None:
    for overlay, objects in rendered.items():
        config = next(
            c["data"]
            for n, c in of_kind(objects, "ConfigMap").items()
            if n.startswith("strata-web-config-")
        )
        assert config["STRATA_WEB_SECURE_COOKIES"] == "always", overlay
        assert config["STRATA_WEB_HOST"] == "0.0.0.0" and config["STRATA_WEB_PORT"] == "8080"
        policed = "strata-web-ingress" in of_kind(objects, "NetworkPolicy")
        assert policed == (overlay != "dev")
        trusted = config["STRATA_WEB_FORWARDED_ALLOW_IPS"]
        assert trusted == ("*" if policed else "127.0.0.1"), overlay
        ingress = of_kind(objects, "Ingress")["strata-web"]["spec"]
        [path] = ingress["rules"][0]["http"]["paths"]
        assert path["path"] == "/" and path["backend"]["service"] == {
            "name": "strata-web",
            "port": {"name": "http"},
        }
        assert ingress["tls"][0]["hosts"] == [ingress["rules"][0]["host"]]
        service = of_kind(objects, "Service")["strata-web"]["spec"]
        assert {p["name"]: p["port"] for p in service["ports"]} == {"http": 8080, "metrics": 9464}


def test_every_service_has_its_own_certificate_from_the_strata_ca(rendered) -> None:
    for overlay, objects in rendered.items():
        certificates = of_kind(objects, "Certificate")
        issuer = of_kind(objects, "Issuer")["strata-ca"]["spec"]["ca"]
        assert certificates["strata-ca"]["spec"]["isCA"]
        assert issuer["secretName"] == certificates["strata-ca"]["spec"]["secretName"]
        for service in (*SERVICES, WEB):
            spec = certificates[f"strata-{service}"]["spec"]
            host = f"strata-{service}"
            assert spec["secretName"] == f"{host}-tls", overlay
            assert spec["issuerRef"]["name"] == "strata-ca"
            assert spec["uris"] == [f"spiffe://strata/service/{service}"]
            assert spec["dnsNames"] == [
                host,
                f"{host}.strata.svc",
                f"{host}.strata.svc.cluster.local",
            ]
            assert set(spec["usages"]) == {
                "server auth",
                "client auth",
                "digital signature",
                "key encipherment",
            }
            assert spec["privateKey"] == {
                "algorithm": "ECDSA",
                "size": 256,
                "rotationPolicy": "Always",
            }
            assert (spec["duration"], spec["renewBefore"]) == ("2160h", "360h")
        client = certificates["strata-ingress-client-tls"]["spec"]
        assert client["uris"] == ["spiffe://strata/client/ingress"]
        assert "server auth" not in client["usages"]
        notes = of_kind(objects, "Ingress")["strata-gateway"]["metadata"]["annotations"]
        assert notes[f"{NGINX}/proxy-ssl-secret"] == f"strata/{client['secretName']}"
        assert (
            notes[f"{NGINX}/proxy-ssl-name"] in certificates["strata-gateway"]["spec"]["dnsNames"]
        )


def test_secrets_the_operator_must_create_are_listed(rendered) -> None:
    # cert-manager makes every TLS secret but the public certificate of the Ingress.
    assert m.external_secrets(rendered["prod"]) == sorted(
        [
            "strata-admin-token",
            "strata-gateway-public-tls",
            "strata-models-s3",
            *(f"strata-pg-{s}" for s in SERVICES),
            "strata-web-public-tls",
        ]
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
    for cls in [*config_classes(), WebConfig]:
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
                e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])
            )
        unknown = {
            v for v in passed if v not in known and v not in others and not v.startswith("AWS_")
        }
        assert not unknown, unknown
    gateway = of_kind(rendered["prod"], "ConfigMap")
    env = next(c for n, c in gateway.items() if n.startswith("strata-gateway-config"))["data"]
    assert env["STRATA_GATEWAY_CONTRACTS_DIR"] == "/etc/strata/contracts"
