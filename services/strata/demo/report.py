"""The campaign report: `campaign.json`, its plots (PNG) and one HTML page."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from strata.common.pages import embedded_image, fmt, png
from strata.demo import arms
from strata.demo.crowd import Annotator
from strata.demo.results import CampaignResult

KIND_COLOURS = {
    "expert": "tab:green",
    "good": "tab:blue",
    "average": "tab:orange",
    "careless": "tab:purple",
    "spammer": "tab:red",
    "copycat": "tab:brown",
    "corruptor": "tab:pink",
}


@dataclass
class CampaignReport:
    active: CampaignResult
    baseline: CampaignResult
    findings: dict[str, dict[str, Any]]  # by project
    comparison: dict[str, Any]
    counters: dict[str, dict[str, float]]  # by service
    unreadable_metrics: list[str]
    dead_letters: list[dict[str, str]]


def _campaign(result: CampaignResult) -> dict[str, Any]:
    return {
        "settings": asdict(result.settings),
        "stopped_because": result.stopped_because,
        "seconds": round(result.seconds, 1),
        "imported": result.imported,
        "human_labels": result.human_labels,
        "final_test_accuracy": result.final_accuracy,
        "learning_curve": [asdict(p) for p in result.curve],
        "labels_by_annotator": result.labels_by_annotator,
        "blocked": result.blocked,
        "errors": result.errors,
    }


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing figures are null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def summary(r: CampaignReport, crowd: list[Annotator]) -> dict[str, Any]:
    return _clean(
        {
            "active": {**_campaign(r.active), **r.findings.get(r.active.settings.project, {})},
            "baseline": {
                **_campaign(r.baseline),
                **r.findings.get(r.baseline.settings.project, {}),
            },
            "comparison": r.comparison,
            "crowd": {
                a.annotator_id: {
                    "kind": a.kind,
                    "true_accuracy": round(a.accuracy, 3),
                    "seconds_per_label": a.seconds_per_label,
                    "ring_share": a.ring_share,
                }
                for a in crowd
            },
            "services": {
                "counters": r.counters,
                "unreadable": r.unreadable_metrics,
            },
            "dead_letters": r.dead_letters,
        }
    )


def learning_curves(r: CampaignReport) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for result, style in ((r.active, "o-"), (r.baseline, "s--")):
        pts = sorted(result.curve, key=lambda p: p.human_labels)
        ax.plot(
            [p.human_labels for p in pts],
            [p.test_accuracy for p in pts],
            style,
            label=f"{result.settings.strategy} ({result.settings.project})",
        )
    target = r.active.settings.target_accuracy
    ax.axhline(target, color="grey", linestyle=":", label=f"target {target}")
    reach = r.comparison.get("active_labels_to_reach_baseline_final")
    if reach is not None:
        ax.axvline(reach, color="tab:blue", alpha=0.3)
        ax.annotate(
            f"baseline's final accuracy\nreached at {reach} labels",
            (reach, r.comparison["baseline_final_test_accuracy"]),
            fontsize=8,
            xytext=(8, -30),
            textcoords="offset points",
        )
    ax.set_xlabel("human labels spent (when the version's run read its training set)")
    ax.set_ylabel("test accuracy (split nobody labelled)")
    ax.set_title("Learning curves: active learning vs random sampling, same pipeline")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)


def savings_plot(r: CampaignReport) -> bytes | None:
    budgets = r.comparison.get("by_budget", [])
    rows = [s for s in budgets if s["share"] is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([s["baseline_labels"] for s in rows], [100 * s["share"] for s in rows], "o-", ms=3)
    ax.axhline(50, color="grey", linestyle=":", label="half of random's labels")
    top = max(110, 100 * max(s["share"] for s in rows) + 10)
    ax.set_ylim(0, top)
    # Budgets active learning never matched are shown, not dropped: a reader
    # should not take the last plotted share for the verdict at the end.
    if missed := [s["baseline_labels"] for s in budgets if s["share"] is None]:
        ax.plot(
            missed,
            [top * 0.97] * len(missed),
            "x",
            color="tab:red",
            label="active learning never matched it",
        )
    ax.set_xlabel("random sampling's budget (human labels)")
    ax.set_ylabel("active learning's labels (%)")
    window = r.comparison.get("smoothing_window", 1)
    ax.set_title(
        "Labels active learning needs to match random sampling at each budget\n"
        f"(both curves averaged over {window} consecutive models)",
        fontsize=10,
    )
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)


def ranking_plot(findings: dict[str, Any], title: str) -> bytes:
    rows = findings["annotator_ranking"]["by_estimate"]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for row in rows:
        ax.scatter(
            row["observed_accuracy"],
            row["estimated_accuracy"],
            color=KIND_COLOURS.get(row["kind"], "black"),
            marker="x" if row["blocked"] else "o",
        )
        ax.annotate(
            row["annotator_id"], (row["observed_accuracy"], row["estimated_accuracy"]), fontsize=7
        )
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    rho = findings["annotator_ranking"]["spearman_estimated_vs_observed"]
    ax.set_xlabel("true accuracy on the labels they gave")
    ax.set_ylabel("quality's estimate (Dawid-Skene)")
    ax.set_title(f"{title}: Spearman {rho:.2f} (x = blocked)" if rho == rho else title)
    ax.grid(alpha=0.3)
    return png(fig)


def anchoring_plot(by_project: dict[str, list[dict[str, Any]]]) -> bytes | None:
    """Each annotator's anchoring on gold (quality's rate with its 95% interval) per
    campaign; a cross marks the blocked."""
    if not any(by_project.values()):
        return None
    fig, axes = plt.subplots(
        1, len(by_project), figsize=(5.2 * len(by_project), 4.2), squeeze=False
    )
    for ax, (project, rows) in zip(axes[0], by_project.items(), strict=True):
        for n, row in enumerate(rows):
            rate = row["anchoring_rate_on_gold"]
            colour = KIND_COLOURS.get(row["kind"], "black")
            if rate is not None:
                low, high = row["anchoring_interval_on_gold"]
                # Rounding can put a bound a hair on the wrong side of the rate.
                spread = [[max(0.0, rate - low)], [max(0.0, high - rate)]]
                ax.errorbar(n, rate, yerr=spread, color=colour, capsize=3, fmt="none")
            ax.scatter(
                n,
                rate if rate is not None else 0.0,
                color=colour,
                marker="x" if row["blocked"] else "o",
                alpha=1.0 if rate is not None else 0.3,
            )
        ax.set_xticks(range(len(rows)), [r["annotator_id"] for r in rows], rotation=70, fontsize=7)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("agreed with a wrong pre-label (on gold)")
        ax.set_title(f"{project}: anchoring (x = blocked)", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


def depth_plot(findings: dict[str, Any]) -> bytes | None:
    depth = findings["depth_profiles"]
    by_class = depth["entropy_by_class"]
    if not by_class:
        return None
    classes = sorted(by_class)
    grid = np.asarray([by_class[c] for c in classes])
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    image = ax.imshow(grid, aspect="auto", cmap="magma_r")
    ax.set_yticks(range(len(classes)), classes)
    groups = depth["layer_groups"] or [str(g + 1) for g in range(grid.shape[1])]
    ax.set_xticks(range(grid.shape[1]), groups, rotation=30, fontsize=7)
    ax.set_xlabel("layer group (head first)")
    ax.set_ylabel("class")
    ax.set_title("Depth profiles: confusion entropy per class and depth")
    fig.colorbar(image, ax=ax, label="entropy (nats)")
    return png(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def wrong_labels_section(*campaigns: dict[str, Any]) -> list[str]:
    """Memorization flags against the labels known to be wrong, where those came from,
    and TracIn's rank of each planted twin when its original is traced."""
    parts = [
        "<h2>Wrong labels in training: memorization flags and TracIn</h2><p>Wrong labels "
        "reach training on purpose: a ring of corruptors, who answer gold honestly, takes "
        "its tasks together and on a share of the items it holds alone answers the "
        "look-alike class, which consensus accepts; and a few planted twins (near-copies "
        "of pool images, below the sampler's near-duplicate threshold) are misread as "
        "their look-alike by everyone. Quality's label-error audit and the memorization "
        "flags send suspect accepted labels back to experts, so some wrong labels are "
        "trained on only until then: counted in any run, and in the final model. Below, "
        "the final model's training labels against the truth: how many training flagged "
        "as memorized are wrong (precision) and how many wrong ones it flagged "
        "(recall).</p>",
        _table(
            [{"project": d["settings"]["project"], **d.get("memorization", {})} for d in campaigns],
            [
                "project",
                "training_labels",
                "wrong_training_labels",
                "wrong_labels_in_any_run",
                "flagged",
                "flagged_wrong",
                "precision",
                "recall",
            ],
        ),
    ]
    for d in campaigns:
        mem = d.get("memorization", {})
        parts.append(
            f"<h3>{html.escape(d['settings']['project'])}: where the wrong training labels "
            "came from</h3>"
        )
        parts.append(
            _table(
                mem.get("wrong_by_source", []),
                ["source", "in_any_run", "wrong_training_labels", "flagged", "recall"],
            )
        )
        parts.append(
            "<p>Wrong answers of each kind of annotator who corrupts labels (on the "
            "twins aside), and what became of them: the items, those the final model "
            "trained on, those some run or the final model trained on with their wrong "
            "class, and those flagged:</p>"
        )
        parts.append(
            _table(
                mem.get("corrupted_by_kind", []),
                [
                    "kind",
                    "wrong_answers",
                    "items",
                    "trained_on",
                    "in_any_run_with_their_wrong_class",
                    "trained_with_their_wrong_class",
                    "flagged",
                ],
            )
        )
    parts.append(
        "<h3>Planted mislabeled twins, traced</h3><p>Each twin's original (labelled "
        "right) is traced through the final model with TracIn; the twin's wrong label "
        "should be among the training labels that most oppose the original's prediction "
        "(rank 1: the strongest). A twin that does not oppose counts as beyond every "
        "opposing label.</p>"
    )
    parts.append(
        _table(
            [{"project": d["settings"]["project"], **d.get("twins", {})} for d in campaigns],
            [
                "project",
                "planted",
                "measured",
                "median_rank",
                "in_top_near",
                "near",
                "in_top_k",
                "top_k",
                "not_in_top_k",
                "original_predicted_as_twin",
            ],
        )
    )
    for d in campaigns:
        parts.append(f"<p>{html.escape(d['settings']['project'])}:</p>")
        parts.append(
            _table(
                d.get("twins", {}).get("by_twin", []),
                [
                    "original_item",
                    "twin_item",
                    "true_class",
                    "twin_label",
                    "predicted_class",
                    "rank_among_opposing",
                    "opposing_labels",
                    "side",
                    "error",
                ],
            )
        )
    return parts


def to_html(data: dict[str, Any], images: dict[str, bytes]) -> str:
    a, b, c = data["active"], data["baseline"], data["comparison"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Strata campaign report</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}</style>"
        "</head><body><h1>Labeling campaign report: digits</h1>",
        f"<p>Active learning ({html.escape(a['settings']['strategy'])}): final test accuracy "
        f"<b>{fmt(a['final_test_accuracy'])}</b> after {a['human_labels']} human labels "
        f"({html.escape(a['stopped_because'])}, {a['seconds']} s). Random baseline through the "
        f"same pipeline: {fmt(b['final_test_accuracy'])} after {b['human_labels']} labels. "
        f"<b>{html.escape(c['verdict'])}</b></p>",
    ]
    if "learning_curves.png" in images:
        parts.append(embedded_image("learning_curves.png", images["learning_curves.png"]))
    if "savings_by_budget.png" in images:
        parts.append(embedded_image("savings_by_budget.png", images["savings_by_budget.png"]))
    parts.append("<h2>Crowd: majority vote vs Dawid-Skene, against the truth</h2>")
    parts.append(
        _table(
            [{"project": d["settings"]["project"], **d.get("crowd_accuracy", {})} for d in (a, b)],
            [
                "project",
                "accepted_labels",
                "accepted_label_accuracy",
                "crowd_decided_items",
                "majority_vote_accuracy",
                "dawid_skene_accuracy",
                "expert_resolved_items",
                "expert_resolved_accuracy",
            ],
        )
    )
    parts.append("<h2>Annotators: quality's estimate vs true skill</h2>")
    if "annotator_ranking.png" in images:
        parts.append(embedded_image("annotator_ranking.png", images["annotator_ranking.png"]))
    parts.append(
        _table(
            a.get("annotator_ranking", {}).get("by_estimate", []),
            ["annotator_id", "kind", "estimated_accuracy", "observed_accuracy", "blocked"],
        )
    )
    parts.append(
        "<h2>Anchoring: who agrees with wrong pre-labels</h2><p>On gold, a share of the "
        "pre-labels shown is wrong on purpose (honeypots); quality blocks an annotator whose "
        "agreement with wrong pre-labels is surely above the contract's limit. Beside it, "
        "the rate the simulation saw on every task whose pre-label was wrong.</p>"
    )
    if "anchoring.png" in images:
        parts.append(embedded_image("anchoring.png", images["anchoring.png"]))
    for d in (a, b):
        parts.append(f"<h3>{html.escape(d['settings']['project'])}</h3>")
        parts.append(
            _table(
                d.get("anchoring", []),
                [
                    "annotator_id",
                    "kind",
                    "wrong_prelabels_on_gold",
                    "anchoring_rate_on_gold",
                    "wrong_prelabels_seen",
                    "observed_anchoring_rate",
                    "blocked",
                    "why",
                ],
            )
        )
    parts.extend(wrong_labels_section(a, b))
    parts.extend(arms.section([a, b], images))
    parts.append("<h2>Depth profiles</h2>")
    if "depth_profiles.png" in images:
        parts.append(embedded_image("depth_profiles.png", images["depth_profiles.png"]))
    parts.append("<h2>Traced influences (final model, test items)</h2>")
    for t in a.get("traced_influences", []):
        parts.append(
            f"<p>Test item {t['test_index']} (true {t['true_class']}, predicted "
            f"{html.escape(t['predicted_class'])}): labels that pushed towards the prediction</p>"
        )
        parts.append(
            _table(t["supporting"], ["item_id", "value", "annotators", "consensus_score", "score"])
        )
    parts.append("<h2>Services</h2>")
    counters = data["services"]["counters"]
    parts.append(
        _table(
            [
                {"service": s, "counters": len(v), "nonzero": sum(1 for x in v.values() if x)}
                for s, v in counters.items()
            ],
            ["service", "counters", "nonzero"],
        )
    )
    parts.append(f"<p>Dead letters: {len(data['dead_letters'])}.</p></body></html>")
    return "\n".join(parts)


def write(r: CampaignReport, crowd: list[Annotator], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = summary(r, crowd)
    (out_dir / "campaign.json").write_text(json.dumps(data, indent=2) + "\n")
    images: dict[str, bytes] = {}
    if r.active.curve or r.baseline.curve:
        images["learning_curves.png"] = learning_curves(r)
    if (savings := savings_plot(r)) is not None:
        images["savings_by_budget.png"] = savings
    active = r.findings.get(r.active.settings.project)
    if active and active["annotator_ranking"]["by_estimate"]:
        images["annotator_ranking.png"] = ranking_plot(active, "Annotator ranking")
    if active and (depth := depth_plot(active)) is not None:
        images["depth_profiles.png"] = depth
    anchoring = {project: f.get("anchoring", []) for project, f in r.findings.items()}
    if (picture := anchoring_plot(anchoring)) is not None:
        images["anchoring.png"] = picture
    by_project = {p: f.get("governance_arms", {}) for p, f in r.findings.items()}
    if (picture := arms.arms_plot(by_project)) is not None:
        images["governance_arms.png"] = picture
    curves = {p: f.get("trust_curve") for p, f in r.findings.items()}
    if (picture := arms.trust_plot(curves)) is not None:
        images["trust_curves.png"] = picture
    for name, raw in images.items():
        (out_dir / name).write_bytes(raw)
    page = out_dir / "report.html"
    page.write_text(to_html(data, images))
    return page
