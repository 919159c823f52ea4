"""What the operator console shows, asked of the services as the signed-in person and
shaped for a page or the API: the project's progress and queue, agreement by class and
between annotators, model versions and their learning curve, contract versions, and the
governance chain of one item (votes, consensus, how deep its label reached in which
runs, and the labels that shaped its prediction).

Each function makes its calls at once (Backends.gather) and returns plain data; the
shaping in between is pure (the `*_view` functions), and tested without a server."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import yaml

from strata.v1 import (
    gateway_pb2,
    inference_pb2,
    quality_pb2,
    sampler_pb2,
    training_pb2,
)
from strata.web import charts, views
from strata.web.backends import BackendError, Backends, Person

QUALITY_STATES = ("open", "accepted", "review", "expert")


def _num(value: float, digits: int = 4) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _ago(then: str | None, now: datetime) -> float | None:
    if then is None:
        return None
    at = datetime.fromisoformat(then.removesuffix("Z")).replace(tzinfo=UTC)
    return max(0.0, (now - at).total_seconds())


# -- overview: queue, burndown, throughput, review backlog -----------------------------------


def queue_view(q: gateway_pb2.QueueStatsResponse, now: datetime) -> dict[str, Any]:
    oldest = views.iso(q.oldest_lease_at)
    return {
        "ready": q.ready,
        "leased": q.leased,
        "completed": q.completed,
        "review_tasks": q.review_tasks,
        # Every vote asked for is in, and quality has not decided yet.
        "labelled": q.items_by_state.get("labelled", 0),
        "items_by_state": dict(q.items_by_state),
        "labels_total": q.labels_total,
        "labels_last_hour": q.labels_last_hour,
        "oldest_lease_at": oldest,
        "oldest_lease_seconds": _ago(oldest, now),
        "oldest_lease_annotator": q.oldest_lease_annotator or None,
    }


def progress_view(
    progress: quality_pb2.ProjectProgressResponse, pool: sampler_pb2.PoolStatsResponse
) -> dict[str, Any]:
    """The burndown's counts now, and its curves: labels and decisions so far, and the
    imported items still undecided, over time."""
    sampler = dict(pool.items_by_state)
    quality = {s: int(progress.items_by_state.get(s, 0)) for s in QUALITY_STATES}
    imported = sum(sampler.get(s, 0) for s in ("pool", "inflight", "review", "labeled"))
    decided = quality["accepted"] + quality["expert"]
    labels = decided_cum = 0
    labelled: list[tuple[float, float]] = []
    decisions: list[tuple[float, float]] = []
    remaining: list[tuple[float, float]] = []
    hourly: list[tuple[float, float]] = []
    backlog: list[tuple[float, float]] = []
    opened = 0
    scale = 3600.0 / progress.bucket_seconds if progress.bucket_seconds else 0.0
    if progress.buckets:
        # The cumulative curves start from nothing at the first bucket's start.
        origin = float(progress.buckets[0].start.seconds)
        labelled.append((origin, 0))
        decisions.append((origin, 0))
        remaining.append((origin, imported))
    for b in progress.buckets:
        x = float(b.start.seconds + progress.bucket_seconds)
        labels += b.human_labels
        decided_cum += b.decided
        labelled.append((x, labels))
        decisions.append((x, decided_cum))
        remaining.append((x, max(0, imported - decided_cum)))
        hourly.append((x - progress.bucket_seconds / 2, round(b.human_labels * scale, 1)))
        opened += b.reviews_opened - b.reviews_resolved
        backlog.append((x, max(0, opened)))
    burndown = charts.line_chart(
        [
            charts.Series("undecided", remaining),
            charts.Series("human labels", labelled),
            charts.Series("decided", decisions),
        ],
        title="Burndown: imported items still undecided, labels given and items decided",
        x_label="time (UTC)",
        y_label="items / labels",
        x_format="time",
    )
    throughput = charts.line_chart(
        [charts.Series("labels / hour", hourly)],
        title="Throughput: human labels per hour",
        x_label="time (UTC)",
        y_label="labels per hour",
        x_format="time",
        height=180,
    )
    reviews = charts.line_chart(
        [charts.Series("open reviews", backlog)],
        title="Review backlog: reviews opened and not yet resolved",
        x_label="time (UTC)",
        y_label="open reviews",
        x_format="time",
        height=180,
    )
    return {
        "counts": {
            "imported": imported,
            "queued": sampler.get("inflight", 0),
            "labeled": sampler.get("labeled", 0),
            "accepted": decided,
            "in_review": quality["review"],
            "labelled_by_model": progress.decided_by_model,
            "gold": sampler.get("gold", 0),
            "duplicates": sampler.get("duplicate", 0),
        },
        "open_reviews": progress.open_reviews,
        "human_labels_last_hour": progress.human_labels_last_hour,
        "bucket_seconds": progress.bucket_seconds,
        "buckets": [
            {
                "start": views.iso(b.start),
                "human_labels": b.human_labels,
                "model_labels": b.model_labels,
                "decided": b.decided,
                "reviews_opened": b.reviews_opened,
                "reviews_resolved": b.reviews_resolved,
            }
            for b in progress.buckets
        ],
        "burndown_svg": burndown,
        "throughput_svg": throughput,
        "backlog_svg": reviews,
    }


def overview(backends: Backends, project: str, me: Person) -> dict[str, Any]:
    """The console's first page: queue, burndown, throughput, reviews and annotators."""
    queue, people, scores, progress, pool = backends.gather(
        [
            (backends.gateway.QueueStats, gateway_pb2.QueueStatsRequest(project=project)),
            (backends.gateway.ListAnnotators, gateway_pb2.ListAnnotatorsRequest(project=project)),
            (
                backends.quality.AnnotatorScores,
                quality_pb2.AnnotatorScoresRequest(project=project),
            ),
            (
                backends.quality.ProjectProgress,
                # A minute each, grown by quality (doubling) to at most 500 buckets.
                quality_pb2.ProjectProgressRequest(project=project, bucket_seconds=60),
            ),
            (
                backends.sampler.PoolStats,
                sampler_pb2.PoolStatsRequest(project=project, counts_only=True),
            ),
        ],
        me,
    )
    return {
        "queue": queue_view(queue, datetime.now(UTC)),
        "progress": progress_view(progress, pool),
        "annotators": views.annotator_rows(people, scores),
    }


# -- agreement: by class, between annotators ---------------------------------------------------


def agreement_view(
    report: quality_pb2.AgreementReportResponse, pairs: quality_pb2.PairwiseAgreementResponse
) -> dict[str, Any]:
    """Agreement by class, and the pairwise heatmap as rows of cells (each cell names the
    pair, so a click can open the items they disagreed on)."""
    by_class = sorted(
        (
            {
                "class_label": s.key,
                "alpha": _num(s.krippendorff_alpha),
                "fleiss_kappa": _num(s.fleiss_kappa),
                "items": s.items,
            }
            for s in report.slices
            if s.dimension == "class"
        ),
        key=lambda c: (c["alpha"] is None, c["alpha"] if c["alpha"] is not None else 0.0),
    )
    names = list(pairs.annotators)
    cell = {}
    for p in pairs.pairs:
        data = {
            "a": p.a,
            "b": p.b,
            "shared_items": p.shared_items,
            "agreed": p.agreed,
            "disagreed": p.shared_items - p.agreed,
            "kappa": _num(p.cohen_kappa, 3),
        }
        cell[(p.a, p.b)] = cell[(p.b, p.a)] = data
    rows = []
    for a in names:
        cells: list[dict[str, Any]] = []
        for b in names:
            if a == b:
                cells.append({"self": True})
                continue
            found = cell.get((a, b))
            cells.append(
                {
                    "self": False,
                    "a": a,
                    "b": b,
                    "pair": found,
                    "heat": charts.heat_class(found["kappa"] if found else None),
                }
            )
        rows.append({"annotator": a, "cells": cells})
    overall = report.overall
    return {
        "metric": report.metric,
        "threshold": report.threshold,
        "done": report.done,
        "overall": {
            "alpha": _num(overall.krippendorff_alpha),
            "fleiss_kappa": _num(overall.fleiss_kappa),
            "mean_cohen_kappa": _num(overall.mean_cohen_kappa),
            "items": overall.items,
        },
        "by_class": by_class,
        "annotators": names,
        "pairs": [
            {
                "a": p.a,
                "b": p.b,
                "shared_items": p.shared_items,
                "agreed": p.agreed,
                "cohen_kappa": _num(p.cohen_kappa, 4),
            }
            for p in pairs.pairs
        ],
        "heatmap": rows,
    }


def agreement(backends: Backends, project: str, me: Person) -> dict[str, Any]:
    report, pairs = backends.gather(
        [
            (
                backends.quality.AgreementReport,
                quality_pb2.AgreementReportRequest(project=project),
            ),
            (
                backends.quality.PairwiseAgreement,
                quality_pb2.PairwiseAgreementRequest(project=project),
            ),
        ],
        me,
    )
    return agreement_view(report, pairs)


def disagreements(
    backends: Backends, project: str, a: str, b: str, me: Person, limit: int = 100
) -> dict[str, Any]:
    reply = backends.call(
        backends.quality.PairDisagreements,
        quality_pb2.PairDisagreementsRequest(project=project, a=a, b=b, limit=limit),
        me,
    )
    return {
        "a": a,
        "b": b,
        "total": reply.total,
        "items": [
            {
                "item_id": d.item_id,
                "value_a": d.value_a,
                "value_b": d.value_b,
                "consensus_value": d.consensus_value,
                "state": d.state,
            }
            for d in reply.items
        ],
    }


def contested(
    backends: Backends, project: str, class_label: str, me: Person, limit: int = 100
) -> dict[str, Any]:
    """The items people split on where one answer was `class_label`: what is behind a
    class's agreement."""
    reply = backends.call(
        backends.quality.ContestedItems,
        quality_pb2.ContestedItemsRequest(project=project, class_label=class_label, limit=limit),
        me,
    )
    return {
        "class_label": class_label,
        "total": reply.total,
        "items": [
            {
                "item_id": c.item_id,
                "values": list(c.values),
                "consensus_value": c.consensus_value,
                "state": c.state,
            }
            for c in reply.items
        ],
    }


# -- models: versions and the learning curve ---------------------------------------------------


def models_view(
    listed: inference_pb2.ListModelsResponse, runs: training_pb2.ListRunsResponse
) -> dict[str, Any]:
    """Versions newest first, and the learning curve. Strata's test set is the project's
    gold: gold items never train, training evaluates each version on them (held out) and
    inference scores them again to calibrate; the first is shown, the second when training
    kept no figure (the two agree: calibration does not change a prediction)."""
    labels_of = {r.run.run_id: r.n_labels for r in runs.runs}
    versions = []
    for m in listed.models:
        trained = m.HasField("metrics") and m.metrics.n_eval > 0
        versions.append(
            {
                "model_version": m.model_version,
                "run_id": m.run_id,
                "family": m.family,
                "labels": labels_of.get(m.run_id),
                "gold_accuracy": _num(m.metrics.accuracy)
                if trained
                else (_num(m.gold_accuracy) if m.n_gold else None),
                "n_gold": m.metrics.n_eval if trained else m.n_gold,
                "ece_before": _num(m.ece_before),
                "ece_after": _num(m.ece_after) if m.calibrated else None,
                "calibrated": m.calibrated,
                "status": m.status,
                "error": m.error,
                "serving": m.serving,
                "published_at": views.iso(m.published_at),
            }
        )
    # The learning curve: accuracy against the labels each version trained on, oldest
    # first; versions whose run training no longer knows are left out of the curve.
    known = sorted(
        (v for v in versions if v["labels"] is not None and v["status"] == "loaded"),
        key=lambda v: (v["labels"], v["published_at"] or ""),
    )
    curve = charts.line_chart(
        [
            charts.Series(
                "gold accuracy",
                [
                    (v["labels"], v["gold_accuracy"])
                    for v in known
                    if v["gold_accuracy"] is not None
                ],
            ),
            charts.Series(
                "ECE",
                [(v["labels"], v["ece_after"]) for v in known if v["ece_after"] is not None],
            ),
        ],
        title="Learning curve: each model version's gold accuracy and calibration error "
        "by the labels it trained on",
        x_label="labels trained on",
        y_label="accuracy / ECE",
        y_range=(0.0, 1.0),
    )
    return {
        "versions": versions,
        "serving": next((v["model_version"] for v in versions if v["serving"]), None),
        "runs": [
            {
                "run_id": r.run.run_id,
                "state": training_pb2.RunState.Name(r.run.state).removeprefix("RUN_STATE_").lower(),
                "model_version": r.run.model_version,
                "labels": r.n_labels,
                "reason": r.reason,
                "started_at": views.iso(r.run.started_at),
                "finished_at": views.iso(r.run.finished_at),
                "error": r.run.error,
            }
            for r in runs.runs
        ],
        "learning_curve_svg": curve,
    }


def models(backends: Backends, project: str, me: Person) -> dict[str, Any]:
    listed, runs = backends.gather(
        [
            (backends.inference.ListModels, inference_pb2.ListModelsRequest(project=project)),
            (backends.training.ListRuns, training_pb2.ListRunsRequest(project=project)),
        ],
        me,
    )
    return models_view(listed, runs)


# -- contracts ---------------------------------------------------------------------------------


def contracts(backends: Backends, project: str, me: Person) -> list[dict[str, Any]]:
    reply = backends.call(
        backends.gateway.ListContracts, gateway_pb2.ListContractsRequest(project=project), me
    )
    return [
        {
            "version": v.version,
            "digest": v.digest,
            "loaded_at": views.iso(v.loaded_at),
            "loaded_by": v.loaded_by,
            "current": v.current,
            "document": v.document,
        }
        for v in reply.versions
    ]


def import_contract(backends: Backends, project: str, document: str, me: Person) -> dict[str, str]:
    """Load a contract document (a new version) into `project`; its own `project:` must
    name this project, so a form on one project's page cannot change another's. The
    gateway validates everything else."""
    try:
        parsed = yaml.safe_load(document)
    except yaml.YAMLError as exc:
        raise BackendError(400, f"invalid contract: not YAML or JSON ({exc})") from None
    named = parsed.get("project") if isinstance(parsed, dict) else None
    if named != project:
        raise BackendError(
            400,
            f"invalid contract: its project is {named!r}, and this page is {project!r}'s; "
            f"set `project: {project}` in the document",
            "INVALID_ARGUMENT",
        )
    reply = backends.call(
        backends.gateway.LoadContract, gateway_pb2.LoadContractRequest(document=document), me
    )
    return {"project": reply.project, "version": reply.version}


# -- the governance chain of one item ---------------------------------------------------------


def lineage_view(reply: training_pb2.ItemLineageResponse) -> list[dict[str, Any]]:
    return [
        {
            "run_id": r.run_id,
            "model_version": r.model_version,
            "finished_at": views.iso(r.finished_at),
            "label_id": r.label_id,
            "value": r.value,
            "consensus_score": _num(r.consensus_score),
            "annotator_ids": list(r.annotator_ids),
            "influence_depth": r.influence_depth,
            "groups": [
                {
                    "name": r.layer_groups[i] if i < len(r.layer_groups) else f"group {i + 1}",
                    "influence": float(f"{v:.4g}"),
                    # Bar length: this group's share of the largest group's influence.
                    "share": round(100 * v / max(r.influence_by_group), 1)
                    if max(r.influence_by_group, default=0) > 0
                    else 0.0,
                }
                for i, v in enumerate(r.influence_by_group)
            ],
        }
        for r in reply.runs
    ]


def influence_view(reply: training_pb2.TraceInfluenceResponse) -> dict[str, Any]:
    def rows(influences: Any) -> list[dict[str, Any]]:
        return [
            {
                "label_id": i.label_id,
                "item_id": i.item_id,
                "annotator_ids": list(i.annotator_ids),
                "value": i.value,
                "consensus_score": _num(i.consensus_score),
                "score": float(f"{i.score:.4g}"),
            }
            for i in influences
        ]

    return {
        "model_version": reply.model_version,
        "predicted_class": reply.predicted_class,
        "supporting": rows(reply.supporting),
        "opposing": rows(reply.opposing),
    }


def chain(backends: Backends, project: str, item_id: str, me: Person) -> dict[str, Any]:
    """Votes → consensus → how deep the label reached → the runs that trained on it →
    the labels and annotators that shaped the serving model's prediction of it."""
    consensus = backends.call(
        backends.quality.ItemConsensus, quality_pb2.ItemConsensusRequest(item_id=item_id), me
    )
    if consensus.consensus.project and consensus.consensus.project != project:
        raise BackendError(404, f"no item {item_id!r} in project {project!r}", "NOT_FOUND")
    lineage = backends.call(
        backends.training.ItemLineage,
        training_pb2.ItemLineageRequest(project=project, item_id=item_id),
        me,
    )
    prediction: dict[str, Any] | None = None
    why_not = ""
    try:
        traced = backends.call(
            backends.training.TraceInfluence,
            training_pb2.TraceInfluenceRequest(project=project, item_id=item_id, top_k=5),
            me,
        )
        prediction = influence_view(traced)
    except BackendError as exc:
        # No model yet, or an item no one may trace (gold): the chain stops at training.
        why_not = exc.message
    return {
        "item_id": item_id,
        "project": project,
        "evidence": views.evidence(
            consensus.consensus, consensus.review if consensus.HasField("review") else None
        ),
        "runs": lineage_view(lineage),
        "prediction": prediction,
        "prediction_unavailable": why_not,
    }
