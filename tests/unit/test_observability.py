"""The embedded stack's Prometheus config and the operators' Grafana dashboard."""

from __future__ import annotations

import json

import yaml
from strata.cli.prometheus import render, scrape_config
from strata.cli.stack import SERVICES, WEB, StackConfig
from strata.ops.manifests import REPO


def test_deploy_scrape_config_is_what_strata_up_writes_for_default_ports() -> None:
    defaults = StackConfig()
    # The web service's metrics port comes after the five services' (Stack.web_metrics_port).
    targets = {
        s: f"127.0.0.1:{defaults.metrics_base_port + i}" for i, s in enumerate((*SERVICES, WEB))
    }
    written = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert written == yaml.safe_load(render(scrape_config(targets, ["rules/*.yml"])))
    jobs = [j["job_name"] for j in written["scrape_configs"]]
    assert jobs == [f"strata-{s}" for s in (*SERVICES, WEB)]


def test_dashboard_covers_every_stage_and_is_well_formed() -> None:
    board = json.loads((REPO / "deploy" / "grafana" / "strata-operations.json").read_text())
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Throughput per stage", "Latency", "Lag and queues", "Label quality", "Model"]
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for service in (*SERVICES, WEB):
        assert f"strata_{service}_" in exprs, service
    for p in panels:
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
            assert p["datasource"]["uid"] == "${datasource}"
    leaderboard = next(p for p in panels if "leaderboard" in p["title"])
    assert leaderboard["type"] == "table" and "strata_quality_gold_accuracy" in str(leaderboard)


def test_the_embedded_stacks_default_ports_lie_below_the_ephemeral_range() -> None:
    """Linux hands out 32768-60999 to outgoing connections: a listening default there
    can be taken by some client's local port at the moment the stack starts."""
    c = StackConfig()
    n = len(SERVICES)
    ports = [c.pg_port, c.kafka_port, c.prometheus_port]
    ports += [c.grpc_base_port + i for i in range(n)] + [c.metrics_base_port + i for i in range(n)]
    ports += [c.web_port, c.metrics_base_port + n]  # the web UI and its metrics
    assert max(ports) < 32768 and len(set(ports)) == len(ports)
