"""What the services know after a campaign: quality's report and exports, training's
depth profiles, memorization flags, ledger, lineage and traced influences, every
service's counters and the dead-letter topic. Only I/O: `run.project_findings` and
`analysis` turn it into the report's figures."""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from strata.cli.reports import write_export, write_report
from strata.common.tls import TlsConfig, open_channel
from strata.common.topics import DEADLETTER
from strata.demo.campaign import CLASSES, bearer
from strata.demo.results import CampaignResult, TwinPair
from strata.demo.split import features
from strata.v1 import (
    events_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    quality_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

SERVICES = ("sampler", "inference", "gateway", "quality", "training")
# A twin's original is traced for every training label that opposes its prediction
# (the RPC's most), so that the twin's rank is exact; the report counts those in the
# top TWIN_TOP_K.
TWIN_TRACE_K = 1000
TWIN_TOP_K = 20


@dataclass(frozen=True)
class Endpoints:
    grpc: dict[str, str]  # service -> host:port
    metrics: dict[str, str]  # service -> http URL of /metrics
    kafka_bootstrap: str
    admin_token: str
    tls: TlsConfig = field(default_factory=lambda: TlsConfig("plaintext"))


def scrape_counters(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """Every counter of one service's /metrics: summed over its labels under its name,
    and each labelled series under `name{label="value",...}`."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        text = reply.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
                if sample.labels:
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                    totals[f"{sample.name}{{{labels}}}"] = sample.value
    return totals


def dead_letters(bootstrap: str, timeout_s: float = 10.0) -> list[dict[str, str]]:
    """Every record on the dead-letter topic: where it came from and why."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(DEADLETTER.name, p)
            for p in consumer.partitions_for_topic(DEADLETTER.name) or ()
        ]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        found: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=300).values():
                for r in records:
                    msg = events_pb2.DeadLetter.FromString(r.value)
                    found.append(
                        {
                            "topic": msg.original_topic,
                            "service": msg.service,
                            "reason": msg.reason,
                        }
                    )
        return found
    finally:
        consumer.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Gathered:
    """What one project's services returned after its campaign."""

    project: str
    quality_report: dict[str, Any]
    exported: list[dict[str, Any]]
    label_studio_tasks: int
    depth: training_pb2.DepthProfileResponse | None
    traced: list[dict[str, Any]]
    # item id -> the value the final model trained on (its ledger), empty without a model
    trained: dict[str, str] = field(default_factory=dict)
    # item id -> the consensus score that label had when the final model trained on it
    trained_scores: dict[str, float] = field(default_factory=dict)
    # item id -> every value some run trained on, for the items someone answered wrong
    ever_trained: dict[str, list[str]] = field(default_factory=dict)
    twin_traces: list[dict[str, Any]] = field(default_factory=list)


def gather(
    endpoints: Endpoints, result: CampaignResult, campaign_split: Any, out_dir: Path, traced: int
) -> Gathered:
    """Quality's report and exports (written under `out_dir/<project>/`), training's
    depth profiles, memorization flags and training labels for the final version, what
    any run trained on for the items someone answered wrong, the labels that most
    influenced a few test items, and each planted twin's original traced."""
    project = result.settings.project
    folder = out_dir / project
    md = bearer(endpoints.admin_token)
    with open_channel(endpoints.grpc["quality"], endpoints.tls) as channel:
        quality = quality_pb2_grpc.QualityStub(channel)
        # The last labels may still be on their way through quality: read until the
        # report and the export agree on the accepted count (or give up after a while).
        deadline = time.monotonic() + 20.0
        while True:
            write_report(quality, md, project, folder)
            rows = write_export(quality, md, project, "jsonl", folder / "labels.jsonl")
            tasks = write_export(
                quality, md, project, "label-studio", folder / "labels.label-studio.json"
            )
            write_export(quality, md, project, "parquet", folder / "labels.parquet")
            states = json.loads((folder / "quality_report.json").read_text())["items"]["by_state"]
            decided = states.get("accepted", 0) + states.get("expert", 0)
            if rows == tasks == decided or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    final = result.curve[-1].model_version if result.curve else ""
    depth = None
    influences: list[dict[str, Any]] = []
    trained: dict[str, str] = {}
    trained_scores: dict[str, float] = {}
    ever: dict[str, list[str]] = {}
    twins: list[dict[str, Any]] = []
    if final:
        with open_channel(endpoints.grpc["training"], endpoints.tls) as channel:
            training = training_pb2_grpc.TrainingStub(channel)
            depth = training.DepthProfile(
                training_pb2.DepthProfileRequest(project=project, model_version=final),
                metadata=md,
                timeout=60,
            )
            for i in campaign_split.test[:traced]:
                reply = training.TraceInfluence(
                    training_pb2.TraceInfluenceRequest(
                        project=project,
                        model_version=final,
                        content=features(campaign_split.x[i]),
                        top_k=5,
                    ),
                    metadata=md,
                    timeout=60,
                )
                influences.append(
                    {
                        "test_index": int(i),
                        "true_class": CLASSES[int(campaign_split.y[i])],
                        "predicted_class": reply.predicted_class,
                        "supporting": [_influence(x) for x in reply.supporting],
                        "opposing": [_influence(x) for x in reply.opposing],
                    }
                )
            ledger = training.QueryLedger(
                training_pb2.QueryLedgerRequest(
                    project=project, model_version=final, layer_group=1, limit=100_000
                ),
                metadata=md,
                timeout=60,
            )
            trained = {e.item_id: e.value for e in ledger.entries}
            trained_scores = {e.item_id: e.consensus_score for e in ledger.entries}
            # Only an item someone answered wrong can have been trained on a wrong value.
            for item in sorted({x.item_id for x in result.submitted if x.answer != x.truth}):
                lineage = training.ItemLineage(
                    training_pb2.ItemLineageRequest(project=project, item_id=item),
                    metadata=md,
                    timeout=30,
                )
                ever[item] = sorted({run.value for run in lineage.runs})
            twins = [
                trace_twin(training, md, project, final, pair, trained) for pair in result.twins
            ]
    return Gathered(
        project=project,
        quality_report=json.loads((folder / "quality_report.json").read_text()),
        exported=read_jsonl(folder / "labels.jsonl"),
        label_studio_tasks=tasks,
        depth=depth,
        traced=influences,
        trained=trained,
        trained_scores=trained_scores,
        ever_trained=ever,
        twin_traces=twins,
    )


def trace_twin(
    training: training_pb2_grpc.TrainingStub,
    md: list[tuple[str, str]],
    project: str,
    version: str,
    pair: TwinPair,
    trained: dict[str, str],
) -> dict[str, Any]:
    """A planted twin's original traced through `version` (when it trained on both):
    the prediction and the item ids of the labels opposing and supporting it, in rank
    order, for `analysis.twin_tracin`."""
    trace: dict[str, Any] = {
        "original_item": pair.original_item,
        "twin_item": pair.twin_item,
        "true_class": CLASSES[pair.true_class],
        "misread_as": CLASSES[pair.misread_as],
        "original_label": trained.get(pair.original_item),
        "twin_label": trained.get(pair.twin_item),
        "predicted_class": None,
        "opposing": [],
        "supporting": [],
    }
    if trace["original_label"] is None or trace["twin_label"] is None:
        return trace
    try:
        reply = training.TraceInfluence(
            training_pb2.TraceInfluenceRequest(
                project=project,
                model_version=version,
                item_id=pair.original_item,
                top_k=TWIN_TRACE_K,
            ),
            metadata=md,
            timeout=60,
        )
    except grpc.RpcError as exc:  # shown with the twin; the other twins go on
        trace["error"] = f"{exc.code().name}: {exc.details()}"
        return trace
    trace["predicted_class"] = reply.predicted_class
    trace["opposing"] = [x.item_id for x in reply.opposing]
    trace["supporting"] = [x.item_id for x in reply.supporting]
    return trace


def _influence(x: Any) -> dict[str, Any]:
    return {
        "item_id": x.item_id,
        "value": x.value,
        "annotators": list(x.annotator_ids),
        "consensus_score": round(x.consensus_score, 4),
        "score": x.score,
        "by_group": [round(v, 6) for v in x.by_group],
    }


def service_counters(endpoints: Endpoints) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Each service's counters, and the services whose metrics could not be read."""
    counters: dict[str, dict[str, float]] = {}
    unreadable: list[str] = []
    for name in SERVICES:
        try:
            counters[name] = scrape_counters(endpoints.metrics[name])
        except OSError as exc:
            unreadable.append(f"{name}: {exc}")
    return counters, unreadable


def existing_projects(endpoints: Endpoints) -> set[str]:
    """The projects the gateway already knows (an earlier demo's among them)."""
    with open_channel(endpoints.grpc["gateway"], endpoints.tls) as channel:
        listed = gateway_pb2_grpc.AnnotationGatewayStub(channel).ListProjects(
            gateway_pb2.ListProjectsRequest(), metadata=bearer(endpoints.admin_token), timeout=30
        )
    return {p.project for p in listed.projects}
