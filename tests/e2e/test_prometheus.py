"""`strata up --prometheus`: a real Prometheus scrapes every service; the alert rules and the
Grafana dashboard name only metrics the services really export; the Kafka users' ACLs cover
what each service really reads and writes."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from strata.cli.prometheus import query
from strata.cli.stack import SERVICES
from strata.ops.manifest_rules import rule_groups
from strata.ops.manifests import REPO

from .support import env_for, read_until, run_strata, start_up

RULES = REPO / "deploy" / "prometheus" / "rules"
DASHBOARD = REPO / "deploy" / "grafana" / "strata-operations.json"
KAFKA_USERS = REPO / "k8s" / "components" / "kafka-users" / "users.yaml"


def exported_names(body: str) -> set[str]:
    """Every series name a /metrics page can produce, samples or not."""
    names: set[str] = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
        names.update(s.name for s in family.samples)
    return names


def referenced(expr: str) -> tuple[set[str], set[str], set[str]]:
    """(metric names, __name__ regexes, recording rules) an expression reads."""
    regexes = set(re.findall(r'__name__=~"([^"]+)"', expr))
    stripped = re.sub(r'"[^"]*"', '""', expr)
    names = set(re.findall(r"\bstrata_[a-z0-9_]+\b", stripped))
    records = set(re.findall(r"\bstrata:[a-z0-9_:]+", stripped))
    return names, regexes, records


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


def wait_for(what: str, check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s}s; last: {last!r}")


def test_up_with_prometheus_scrapes_every_service_and_rules_name_real_metrics(
    tmp_path: Path,
) -> None:
    env = env_for(tmp_path, STRATA_PROMETHEUS_SCRAPE_S="1")
    up = start_up(tmp_path, env, "--prometheus")
    try:
        lines = read_until(up, "Press Ctrl-C", 180)
        assert any("prometheus" in x and "1 rule files" in x for x in lines), lines
        state = json.loads((tmp_path / ".strata" / "stack.json").read_text())
        prom = state["prometheus"]
        assert prom == f"http://127.0.0.1:{env['STRATA_PROMETHEUS_PORT']}"

        # Work through the pipeline: a contract, then items imported through the sampler,
        # which the gateway, inference and training consume.
        contract = tmp_path / "contract.yaml"
        contract.write_text("project: promtest\nversion: v1\nclasses: [a, b]\n")
        items = tmp_path / "items.jsonl"
        items.write_text("".join(f'{{"text": "item number {i}"}}\n' for i in range(40)))
        for args in (
            ["contract", "load", str(contract)],
            ["import", str(items), "--project", "promtest"],
        ):
            done = run_strata(tmp_path, env, *args)
            assert done.returncode == 0, done.stdout + done.stderr

        def healthy_jobs() -> list[str] | None:
            active = http_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
            up_jobs = sorted(t["labels"]["job"] for t in active if t["health"] == "up")
            return up_jobs if len(up_jobs) == len(SERVICES) + 1 else None

        targets = wait_for("six healthy scrape targets (the web's too)", healthy_jobs, 30)
        assert sorted(targets) == sorted(f"strata-{s}" for s in (*SERVICES, "web"))

        # A throughput metric, through Prometheus's HTTP API.
        imported = wait_for(
            "the import counted through Prometheus",
            lambda: [
                r
                for r in query(prom, 'sum(strata_sampler_items_imported_total{project="promtest"})')
                if float(r["value"][1]) == 40
            ],
            30,
        )
        assert imported
        # Counters start when first touched, so a rate needs traffic after the first scrape.
        more = tmp_path / "more.jsonl"
        more.write_text("".join(f'{{"text": "another item {i}"}}\n' for i in range(40)))
        done = run_strata(tmp_path, env, "import", str(more), "--project", "promtest")
        assert done.returncode == 0, done.stdout + done.stderr
        consumed = wait_for(
            "items.imported consumption rates for gateway, inference and training",
            lambda: (
                {
                    r["metric"]["job"]
                    for r in query(
                        prom,
                        'sum by (job) (rate({__name__=~"strata_[a-z]+_events_consumed_total",'
                        ' topic="strata.items.imported", outcome="processed"}[30s])) > 0',
                    )
                }
                >= {"strata-gateway", "strata-inference", "strata-training"}
            ),
            30,
        )
        assert consumed

        # Every rule loaded and evaluates without error.
        def rule_health() -> list[tuple[str, str]] | None:
            groups = http_json(f"{prom}/api/v1/rules")["data"]["groups"]
            rules = [(r["name"], r["health"]) for g in groups for r in g["rules"]]
            return rules if rules and all(h != "unknown" for _, h in rules) else None

        health = wait_for("every rule evaluated", rule_health, 30)
        defined = [
            r.get("alert") or r.get("record") for g in rule_groups(RULES) for r in g["rules"]
        ]
        assert sorted(n for n, _ in health) == sorted(defined)
        assert all(h == "ok" for _, h in health), health

        # Every dashboard query is valid PromQL to this Prometheus.
        for expr in dashboard_exprs():
            query(prom, expr.replace("$project", ".*"))

        # Every metric an alert, a recording rule or a panel reads is one a service exports.
        pages = {
            name: urllib.request.urlopen(info["metrics"], timeout=5).read().decode()
            for name, info in state["processes"].items()
        }
        exported = set().union(*(exported_names(body) for body in pages.values()))
        records = {r["record"] for g in rule_groups(RULES) for r in g["rules"] if "record" in r}
        exprs = [r["expr"] for g in rule_groups(RULES) for r in g["rules"]] + dashboard_exprs()
        for expr in exprs:
            names, regexes, uses = referenced(expr)
            assert names <= exported, f"{expr}: not exported: {sorted(names - exported)}"
            for rx in regexes:
                assert any(re.fullmatch(rx, n) for n in exported), f"{expr}: {rx} matches nothing"
            assert uses <= records, f"{expr}: no recording rule {sorted(uses - records)}"

        # What each service consumes and publishes is inside its Kafka user's ACLs.
        acls = {
            u["metadata"]["name"].removeprefix("strata-"): u["spec"]["authorization"]["acls"]
            for u in yaml.safe_load_all(KAFKA_USERS.read_text())
        }
        # The web touches no Kafka at all: no topic metrics, and no Kafka user.
        assert "consumer_lag" not in pages["web"] and "events_published" not in pages["web"]
        for service, body in pages.items():
            if service == "web":
                continue
            allowed = {
                op: {
                    a["resource"]["name"]
                    for a in acls[service]
                    if a["resource"]["type"] == "topic" and op in a["operations"]
                }
                for op in ("Read", "Write")
            }
            families = {f.name: f for f in text_string_to_metric_families(body)}
            read = {
                s.labels["topic"]
                for s in families[f"strata_{service}_consumer_lag_messages"].samples
            }
            written = {
                s.labels["topic"]
                for s in families[f"strata_{service}_events_published"].samples
                if s.value > 0
            }
            assert read and read <= allowed["Read"], (service, read - allowed["Read"])
            assert written <= allowed["Write"], (service, written - allowed["Write"])
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    rest = up.stdout.read() if up.stdout else ""
    assert code == 0, rest
    # Prometheus stopped with the stack.
    port = int(env["STRATA_PROMETHEUS_PORT"])
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2)
        raise AssertionError("Prometheus still answers after the stack stopped")
    except OSError:
        pass
