"""Strata's own rules for a rendered overlay, beyond the schemas (`make k8s-validate`).

Non-root, read-only root filesystem, requests and limits, native gRPC probes on the
plaintext health port (HTTP probes of /healthz and /readyz for the browser's web service),
a PodDisruptionBudget per Deployment, references that resolve, mutual TLS on every service
with a certificate of its own identity, network policies that cover every pod (Ray's
included), one KafkaTopic per topic of the catalog, and the PrometheusRule equal to
`deploy/prometheus/rules/`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from strata.common.bus import INCARNATION_TOPIC
from strata.common.tls import CLIENT_URI_PREFIX, SERVICE_URI_PREFIX
from strata.common.topics import ALL_TOPICS

# -- Strata's rules ----------------------------------------------------------------

# Services that serve browsers over HTTP instead of gRPC (app.kubernetes.io/component): the
# web service. Plain HTTP on their port named http, behind a TLS Ingress; the kubelet probes
# that port over HTTP. Their gRPC calls to the others are mutual TLS like everyone's.
HTTP_SERVICES = frozenset({"web"})
# Probe -> the path an HTTP service answers it on: alive while the process runs, ready while
# the gateway answers SERVING.
HTTP_PROBES = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}


def _name(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _pod_specs(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
        yield _name(obj), obj["spec"]["template"]
    if obj["kind"] == "RayCluster":
        yield f"{_name(obj)} head", obj["spec"]["headGroupSpec"]["template"]
        for group in obj["spec"].get("workerGroupSpecs", []):
            yield f"{_name(obj)} {group['groupName']}", group["template"]


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _component(dep: Mapping[str, Any]) -> str:
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    return str(labels.get("app.kubernetes.io/component", ""))


def _http_probe_problems(dep: Mapping[str, Any]) -> list[str]:
    """An HTTP service's probes: httpGet of its health paths on its http port; no gRPC port."""
    at, c = _name(dep), dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    problems = []
    if "http" not in ports:
        problems.append(f"{at}: needs its HTTP port (a container port named http)")
    if "grpc" in ports:
        problems.append(f"{at}: serves browsers over HTTP; it has no gRPC port")
    for probe, path in HTTP_PROBES.items():
        if probe not in c and probe != "startupProbe":
            problems.append(f"{at}: needs a {probe}")
            continue
        get = c.get(probe, {}).get("httpGet")
        if probe in c and (
            get is None
            or get.get("path") != path
            or get.get("port") not in {"http", ports.get("http")}
            or get.get("scheme", "HTTP") != "HTTP"
        ):
            problems.append(f"{at}: {probe} must be an httpGet of {path} on its http port")
    return problems


def policy_problems(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """What breaks Strata's deployment rules (STYLE: Kubernetes)."""
    problems: list[str] = []
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    configmaps = {o["metadata"]["name"] for o in by_kind.get("ConfigMap", [])}
    for where, template in (p for o in objects for p in _pod_specs(o)):
        pod = template["spec"]
        pod_ctx = pod.get("securityContext", {})
        for c in pod["containers"]:
            ctx = c.get("securityContext", {})
            at = f"{where} container {c['name']}"
            if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")):
                problems.append(f"{at}: must run as non-root (runAsNonRoot)")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem must be read-only")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation must be false")
            if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
                problems.append(f"{at}: must drop ALL capabilities")
            res = c.get("resources", {})
            for part, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
                missing = [k for k in keys if k not in res.get(part, {})]
                if missing:
                    problems.append(f"{at}: resources.{part} needs {', '.join(missing)}")
            if str(c.get("image", "")).endswith(":latest"):
                problems.append(f"{at}: pin the image tag, not :latest")
            for ref in c.get("envFrom", []):
                name = ref.get("configMapRef", {}).get("name")
                if name and name not in configmaps:
                    problems.append(f"{at}: envFrom ConfigMap {name} is not in the render")
        for volume in pod.get("volumes", []):
            name = volume.get("configMap", {}).get("name")
            if name and name not in configmaps:
                problems.append(f"{where}: volume ConfigMap {name} is not in the render")
    pdbs = by_kind.get("PodDisruptionBudget", [])
    for dep in by_kind.get("Deployment", []):
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        c = dep["spec"]["template"]["spec"]["containers"][0]
        if _component(dep) in HTTP_SERVICES:
            problems += _http_probe_problems(dep)
        else:
            for probe in ("readinessProbe", "livenessProbe"):
                if "grpc" not in c.get(probe, {}):
                    problems.append(f"{_name(dep)}: {probe} must be a native grpc probe")
        if not any(_matches(p["spec"]["selector"].get("matchLabels", {}), labels) for p in pdbs):
            problems.append(f"{_name(dep)}: no PodDisruptionBudget selects its pods")
    deployments = {d["metadata"]["name"] for d in by_kind.get("Deployment", [])}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []) + by_kind.get("ScaledObject", []):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.append(f"{_name(hpa)}: scales {target}, which is not in the render")
    pods = [
        d["spec"]["template"]["metadata"].get("labels", {}) for d in by_kind.get("Deployment", [])
    ]
    for svc in by_kind.get("Service", []):
        selector = svc["spec"].get("selector", {})
        if selector and not any(_matches(selector, p) for p in pods):
            problems.append(f"{_name(svc)}: selects no Deployment's pods")
    return problems


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    if not _matches(selector.get("matchLabels", {}), labels):
        return False
    for e in selector.get("matchExpressions", []):
        value, values = labels.get(e["key"]), e.get("values", [])
        holds = {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[e["operator"]]
        if not holds:
            return False
    return True


def pod_labels(obj: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
    """The labels of each kind of pod an object makes, with those KubeRay adds to Ray's."""
    if obj["kind"] != "RayCluster":
        for where, template in _pod_specs(obj):
            yield where, dict(template.get("metadata", {}).get("labels", {}))
        return
    spec = obj["spec"]
    groups = [("head", "headgroup", spec["headGroupSpec"])]
    groups += [("worker", g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]
    for node_type, group, node in groups:
        labels = dict(node["template"].get("metadata", {}).get("labels", {}))
        labels |= {
            "ray.io/cluster": obj["metadata"]["name"],
            "ray.io/node-type": node_type,
            "ray.io/group": group,
        }
        yield f"{_name(obj)} {'head' if node_type == 'head' else group}", labels


def policy_types(policy: Mapping[str, Any]) -> list[str]:
    """The directions a NetworkPolicy limits (Kubernetes' defaults when it does not say)."""
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]


def network_problems(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Where an overlay has NetworkPolicies, every pod (Ray's too) is limited both ways."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if not policies:
        return []
    problems = []
    for where, labels in (p for o in objects for p in pod_labels(o)):
        for direction in ("Ingress", "Egress"):
            if not any(
                direction in policy_types(p) and selects(p["spec"]["podSelector"], labels)
                for p in policies
            ):
                problems.append(
                    f"{where}: no NetworkPolicy limits its {direction.lower()}; this overlay "
                    "has NetworkPolicies, so every pod needs one (a default deny at least)"
                )
    return problems


TLS_FILES = ("STRATA_TLS_CERT", "STRATA_TLS_KEY", "STRATA_TLS_CA")
NGINX = "nginx.ingress.kubernetes.io"


def _environment(
    container: Mapping[str, Any], configmaps: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """The variables a container starts with: its envFrom ConfigMaps in turn, then env."""
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        data = configmaps.get(ref.get("configMapRef", {}).get("name", ""), {})
        env.update({ref.get("prefix", "") + k: str(v) for k, v in data.items()})
    for e in container.get("env", []):
        env[e["name"]] = str(e.get("value", ""))
    return env


def _sets_plaintext(node: Any) -> bool:
    """Whether an env entry or ConfigMap data anywhere in `node` sets STRATA_TLS_MODE=plaintext."""
    if isinstance(node, Mapping):
        pairs = [(node.get("name"), node.get("value")), *node.items()]
        if any(k == "STRATA_TLS_MODE" and str(v).strip().lower() == "plaintext" for k, v in pairs):
            return True
        return any(_sets_plaintext(v) for v in node.values())
    return isinstance(node, list) and any(_sets_plaintext(v) for v in node)


def _deployment_tls_problems(
    dep: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, Any]],
    certificates: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    at, template = _name(dep), dep["spec"]["template"]
    component = _component(dep)
    pod, problems = template["spec"], []
    c = pod["containers"][0]
    env = _environment(c, configmaps)
    if env.get("STRATA_TLS_MODE", "").lower() != "mutual":
        problems.append(f"{at}: STRATA_TLS_MODE must be mutual")
    # The three files must lie on a read-only mount of the secret of a Certificate that
    # carries this service's identity.
    mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts", [])}
    folders = {posixpath.dirname(env.get(variable, "")) for variable in TLS_FILES}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    identity = [SERVICE_URI_PREFIX + component]
    for folder in sorted(folders):
        mount = mounts.get(folder)
        if mount is None:
            problems.append(
                f"{at}: STRATA_TLS_CERT, _KEY and _CA must name files of a mounted TLS secret"
            )
            continue
        secret = volumes.get(mount["name"], {}).get("secret", {}).get("secretName")
        certificate = certificates.get(secret)
        if certificate is None:
            problems.append(f"{at}: mounts no TLS secret that a Certificate in the render makes")
        elif certificate["spec"].get("uris") != identity:
            problems.append(f"{at}: mounts {_name(certificate)}, whose uris are not {identity}")
        if not mount.get("readOnly"):
            problems.append(f"{at}: its TLS secret must be mounted read-only")
    # A peer is dialled by a name its certificate carries, or the handshake fails.
    names = {n for cert in certificates.values() for n in cert["spec"].get("dnsNames", [])}
    for variable, address in sorted(env.items()):
        host = address.rpartition(":")[0]
        if re.fullmatch(r"STRATA_[A-Z]+_ADDRESS", variable) and host not in names:
            problems.append(
                f"{at}: {variable}={address}: no Certificate in the render carries {host}"
            )
    if component not in HTTP_SERVICES:  # their HTTP probes: _http_probe_problems
        problems += _health_port_problems(at, c, env, component)
    return problems


def _health_port_problems(
    at: str, c: Mapping[str, Any], env: Mapping[str, str], component: str
) -> list[str]:
    """The kubelet's grpc probes cannot speak TLS: they ask the plaintext health port."""
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    health = ports.get("health")
    if health is None:
        return [f"{at}: needs a plaintext health port (a container port named health)"]
    problems = []
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in c and c[probe].get("grpc", {}).get("port") != health:
            problems.append(f"{at}: {probe} must ask the health port {health}")
    variable = f"STRATA_{component.upper()}_HEALTH_PORT"
    if env.get(variable) != str(health):
        problems.append(f"{at}: {variable} must be {health}, its health port")
    return problems


def _ingress_backends(ingress: Mapping[str, Any]) -> set[str]:
    """The Services an Ingress sends requests to."""
    spec = ingress["spec"]
    paths = [p for r in spec.get("rules", []) for p in r.get("http", {}).get("paths", [])]
    backends = [p["backend"] for p in paths] + [spec.get("defaultBackend") or {}]
    return {b["service"]["name"] for b in backends if "service" in b}


def _ingress_problems(
    ingress: Mapping[str, Any],
    certificates: Mapping[str, Mapping[str, Any]],
    http_services: set[str],
) -> list[str]:
    at, notes = _name(ingress), ingress["metadata"].get("annotations", {})
    backends = _ingress_backends(ingress)
    if backends and backends <= http_services:
        # The browsers' Ingress: it ends their TLS and speaks plain HTTP to the web service.
        problems = []
        if notes.get(f"{NGINX}/backend-protocol", "HTTP") != "HTTP":
            served = ", ".join(sorted(backends))
            problems.append(f"{at}: backend-protocol must be HTTP: {served} serves plain HTTP")
        if not ingress["spec"].get("tls"):
            problems.append(f"{at}: must end the browsers' TLS (spec.tls): its cookies are Secure")
        return problems
    client = certificates.get(notes.get(f"{NGINX}/proxy-ssl-secret", "").rpartition("/")[2])
    uris = client["spec"].get("uris", []) if client else []
    problems = []
    if notes.get(f"{NGINX}/backend-protocol") != "GRPCS":
        problems.append(f"{at}: backend-protocol must be GRPCS: the services speak only TLS")
    if not uris or not all(u.startswith(CLIENT_URI_PREFIX) for u in uris):
        problems.append(
            f"{at}: proxy-ssl-secret must be the secret of a Certificate for a "
            f"{CLIENT_URI_PREFIX} identity: the services accept no caller without one"
        )
    if notes.get(f"{NGINX}/proxy-ssl-verify") != "on":
        problems.append(f"{at}: proxy-ssl-verify must be on")
    return problems


def tls_problems(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Mutual TLS on every gRPC hop (docs/tls.md): no plaintext anywhere, each service with
    the certificate cert-manager makes for it and probed on its health port, an Ingress
    re-encrypting with a client certificate (the browsers' Ingress to the web service ends
    their TLS and speaks HTTP, the web's only plain hop)."""
    configmaps = {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"
    }
    certificates = {o["spec"]["secretName"]: o for o in objects if o["kind"] == "Certificate"}
    http_services = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Service"
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") in HTTP_SERVICES
    }
    problems = [
        f"{_name(o)}: sets STRATA_TLS_MODE=plaintext; a deploy speaks mutual TLS only"
        for o in objects
        if _sets_plaintext(o)
    ]
    for obj in objects:
        if obj["kind"] == "Deployment":
            problems += _deployment_tls_problems(obj, configmaps, certificates)
        if obj["kind"] == "Ingress":
            problems += _ingress_problems(obj, certificates, http_services)
    return problems


def topic_problems(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """The KafkaTopics must be the topic catalog (strata.common.topics), partitions included."""
    want = {t.name: t.partitions for t in ALL_TOPICS} | {INCARNATION_TOPIC: 1}
    have = {
        o["spec"].get("topicName", o["metadata"]["name"]): o["spec"].get("partitions")
        for o in objects
        if o["kind"] == "KafkaTopic"
    }
    problems = [f"KafkaTopic missing for {name}" for name in sorted(set(want) - set(have))]
    problems += [
        f"KafkaTopic {name} is not in the catalog" for name in sorted(set(have) - set(want))
    ]
    problems += [
        f"KafkaTopic {name}: {have[name]} partitions, the catalog says {want[name]}"
        for name in sorted(set(want) & set(have))
        if have[name] != want[name]
    ]
    return problems


def rule_groups(rules_dir: Path) -> list[Any]:
    """Every group of every rule file, in file order."""
    groups: list[Any] = []
    for path in sorted(rules_dir.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def prometheus_rule(rules_dir: Path) -> dict[str, Any]:
    """The PrometheusRule that carries the rule files' groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "strata"},
        "spec": {"groups": rule_groups(rules_dir)},
    }


def rule_problems(objects: Sequence[Mapping[str, Any]], rules_dir: Path) -> list[str]:
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        return [f"expected one PrometheusRule, found {len(rules)}"]
    if rules[0]["spec"]["groups"] != rule_groups(rules_dir):
        return [
            f"PrometheusRule/strata differs from the rule files in {rules_dir}: "
            "run `make k8s-rules`"
        ]
    return []


def write_prometheus_rule(rules_dir: Path, target: Path) -> None:
    """k8s/base/prometheus-rule.yaml from the rule files."""

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    head = (
        "# Generated by `make k8s-rules` from deploy/prometheus/rules/ (the one source of\n"
        "# Strata's alert and recording rules); `make k8s-validate` fails if they differ.\n"
    )
    body = yaml.dump(prometheus_rule(rules_dir), Dumper=Dumper, sort_keys=False, width=120)
    target.write_text(head + body)


def external_secrets(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Secrets the render refers to but does not create (made before a deploy)."""
    made = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    wanted: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in {"secretKeyRef", "passwordSecret"} and isinstance(value, Mapping):
                    wanted.add(str(value["name"]))
                elif key == "secret" and isinstance(value, Mapping) and "secretName" in value:
                    wanted.add(str(value["secretName"]))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for obj in objects:
        walk(obj)
        # Made by the operators: Strimzi's user operator (one per KafkaUser, its name) and
        # cluster operator (the cluster CA), CloudNativePG (its app and superuser secrets),
        # cert-manager (one per Certificate).
        if obj["kind"] == "KafkaUser":
            made.add(obj["metadata"]["name"])
        if obj["kind"] == "Kafka":
            made.add(f"{obj['metadata']['name']}-cluster-ca-cert")
        if obj["kind"] == "Certificate":
            made.add(obj["spec"]["secretName"])
        if obj["kind"] == "Ingress":
            wanted.update(tls["secretName"] for tls in obj["spec"].get("tls", []))
            proxy = obj["metadata"].get("annotations", {}).get(f"{NGINX}/proxy-ssl-secret")
            if proxy:
                wanted.add(proxy.rpartition("/")[2])
    return sorted(wanted - made)
