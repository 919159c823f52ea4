"""The campaign report's governance section: each final model's training set retrained
under every arm of `strata.training.arms`, side by side, and the trust curve quality
fitted on the campaign's gold.

The training set is what the final model's ledger says it trained on (item, value and
the consensus score the label had then), with each item's features (as the crowd was
handed them, or from quality's export); the test split is the campaign's (nobody
labelled it). Every arm runs as the training service would run
this set (its epochs, minimum steps, batch, learning rate and weight averaging), in
this process, for a few seeds; the learned arm applies the curve in quality's report.
Every label is treated as a crowd label here (the service gives expert-resolved and
gold labels full strength whatever their score; in the demo those score high anyway).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from strata.common.pages import embedded_image, fmt, png
from strata.common.trust import TrustCurve
from strata.gateway.contract import default_governance
from strata.models.families import ModelSpec, build
from strata.training.arms import ARMS, Scored, Task, summarise, train
from strata.training.governance import NO_GOLD
from strata.training.schedule import service_schedule


def curve_of(report_curve: Mapping[str, Any] | None) -> TrustCurve | None:
    """The trust curve in quality's report JSON (None when it has none)."""
    if not report_curve or not report_curve.get("scores"):
        return None
    return TrustCurve(
        tuple(report_curve["scores"]),
        tuple(report_curve["right"]),
        int(report_curve["gold_items"]),
        float(report_curve["prior_strength"]),
    )


def retrain(
    trained: Mapping[str, str],
    scores: Mapping[str, float],
    features: Mapping[str, Sequence[float]],
    truth: Mapping[str, int],
    classes: Sequence[str],
    test_x: np.ndarray,  # type: ignore[type-arg]
    test_y: np.ndarray,  # type: ignore[type-arg]
    report_curve: Mapping[str, Any] | None,
    seeds: int,
) -> dict[str, Any]:
    """Every arm on the final model's training labels (`trained`: item -> value, with
    the consensus `scores` they had then and the items' `features`), for `seeds`
    seeds: test accuracy per arm (mean, 95% interval, per seed) and, for the governed
    arms, the paired difference from the best other arm. Labels whose item's features
    are unknown are skipped (and counted)."""
    items = [i for i in sorted(trained) if i in features and i in scores]
    if not items:
        return {"labels": 0, "skipped": len(trained)}
    index = {c: i for i, c in enumerate(classes)}
    value = np.asarray([index[trained[i]] for i in items], dtype=np.int64)
    score = np.asarray([float(scores[i]) for i in items], dtype=np.float64)
    x = torch.tensor([list(features[i]) for i in items], dtype=torch.float32)
    known = [k for k, i in enumerate(items) if i in truth]
    wrong = [k for k in known if int(value[k]) != truth[items[k]]]
    right = sorted(set(known) - set(wrong))
    spec = ModelSpec("mlp", list(classes), input_dim=x.shape[1])
    task = Task(
        spec,
        lambda picked: (x[torch.from_numpy(picked)],),
        (torch.from_numpy(np.asarray(test_x, dtype=np.float32)),),
        torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
    )
    curve = curve_of(report_curve)
    scored = Scored(
        score,
        len(classes),
        len(build(spec).layer_groups()),
        curve or NO_GOLD,  # no curve yet: learned governance trusts every label
        default_governance(),
    )
    schedule = service_schedule(len(items))
    per_seed: dict[str, list[float]] = {a.name: [] for a in ARMS}
    for seed in range(seeds):
        for arm in ARMS:
            per_seed[arm.name].append(train(task, value, arm.treat(scored), seed, schedule))
    return {
        "labels": len(items),
        "skipped": len(trained) - len(items),
        "wrong_labels": len(wrong),
        "scored_under_0.7": int((score < 0.7).sum()),
        # What a score-based arm has to go on: how the wrong labels scored beside the right.
        "mean_score_wrong": round(float(score[wrong].mean()), 4) if wrong else None,
        "mean_score_right": round(float(score[right].mean()), 4) if right else None,
        "lowest_score": round(float(score.min()), 4),
        "steps": schedule.steps,
        "seeds": seeds,
        "arms": summarise(per_seed, ARMS),
    }


def draw_arms(ax: Any, cells: Sequence[Mapping[str, Any]], names: Sequence[str]) -> float:
    """On `ax`, a group of bars per cell (arm name -> its `summarise` entry): each arm's
    mean with its 95% interval as whiskers. Returns the lowest whisker's end."""
    width = 0.8 / len(names)
    x = np.arange(len(cells))
    lowest = 1.0
    for a, name in enumerate(names):
        means = np.array([c[name]["mean"] for c in cells])
        halves = np.array(
            [(c[name]["ci95"][1] - c[name]["ci95"][0]) / 2 if c[name]["ci95"] else 0 for c in cells]
        )
        lowest = min(lowest, float((means - halves).min()))
        ax.bar(
            x + (a - (len(names) - 1) / 2) * width,
            means,
            width,
            yerr=halves if halves.any() else None,
            capsize=2,
            label=name,
        )
    ax.set_ylim(max(0.0, np.floor((lowest - 0.05) * 20) / 20), 1.0)
    ax.grid(axis="y", alpha=0.3)
    return lowest


def arms_plot(by_project: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Test accuracy per arm (mean of seeds, 95% interval), one group of bars per project."""
    shown = {p: d for p, d in by_project.items() if d.get("arms")}
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.8))
    draw_arms(ax, [d["arms"] for d in shown.values()], [a.name for a in ARMS])
    ax.set_xticks(np.arange(len(shown)), list(shown))
    ax.set_ylabel("test accuracy (mean of seeds, 95% interval)")
    ax.set_title("The final training sets retrained under each arm")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return png(fig)


def trust_plot(curves: Mapping[str, Mapping[str, Any] | None]) -> bytes | None:
    """Each project's trust curve, fitted by quality on its gold."""
    shown = {p: c for p, c in curves.items() if c and c.get("scores")}
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", label="the score at its word")
    for project, c in shown.items():
        label = f"{project} ({c['gold_items']} gold, {c['gold_right']} right)"
        ax.plot(c["scores"], c["right"], marker="o", ms=3, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.06)
    ax.set_xlabel("consensus score")
    ax.set_ylabel("P(label right), from gold")
    ax.set_title("Trust curves (learned governance)")
    ax.legend(loc="lower right", fontsize=7)
    return png(fig)


def section(campaigns: Sequence[Mapping[str, Any]], images: Mapping[str, bytes]) -> list[str]:
    """The report's HTML: the trust curves, then the arms, a row per project."""
    parts = [
        "<h2>Governance: the final training sets under each arm</h2><p>Quality fits a trust "
        "curve on the gold items: how often a consensus label with a given score is right. "
        "Training's default (learned) governance sets each label's depth and gradient "
        "scale from it. Below, each campaign's final training set (the labels its ledger "
        "says the final model trained on, wrong ones included) is retrained as the "
        "training service would, once per arm and seed: ungoverned; drop (labels scoring "
        "under 0.7 left out); weighted (loss times the score); the fixed rules; and the "
        "learned policy on the curve below. Test accuracy on the split nobody labelled, "
        "mean ± half the 95% interval over the seeds.</p>"
    ]
    if "trust_curves.png" in images:
        parts.append(embedded_image("trust_curves.png", images["trust_curves.png"]))
    head = (
        "<tr><th>project</th><th>labels</th><th>wrong</th><th>scored &lt;0.7</th>"
        + "".join(f"<th>{html.escape(a.name)}</th>" for a in ARMS)
        + "<th>learned vs best other</th></tr>"
    )
    body = []
    for d in campaigns:
        got = d.get("governance_arms") or {}
        if not got.get("arms"):
            continue
        cells = "".join(f"<td>{_cell(got['arms'][a.name])}</td>" for a in ARMS)
        delta = got["arms"]["governed-learned"].get("delta_vs_best_other")
        versus = f"{_cell(delta)} ({html.escape(delta['other'])})" if delta else "—"
        body.append(
            f"<tr><td>{html.escape(d['settings']['project'])}</td><td>{got['labels']}</td>"
            f"<td>{got['wrong_labels']}</td><td>{got['scored_under_0.7']}</td>{cells}"
            f"<td>{versus}</td></tr>"
        )
    if body:
        parts.append(f"<table>{head}{''.join(body)}</table>")
        parts.extend(f"<p>{html.escape(line)}</p>" for line in map(scores_line, campaigns) if line)
    else:
        parts.append("<p>No final model: nothing was retrained.</p>")
    if "governance_arms.png" in images:
        parts.append(embedded_image("governance_arms.png", images["governance_arms.png"]))
    return parts


def _cell(summary: Mapping[str, Any]) -> str:
    ci = summary.get("ci95")
    half = f" ± {(ci[1] - ci[0]) / 2:.3f}" if ci else ""
    return f"{fmt(summary['mean'])}{half}"


def scores_line(campaign: Mapping[str, Any]) -> str:
    """What the scores let the arms tell apart, for one project, in a sentence."""
    got = campaign.get("governance_arms") or {}
    if not got.get("arms"):
        return ""
    project = campaign["settings"]["project"]
    line = (
        f"{project}: {got['wrong_labels']} of {got['labels']} training labels wrong; every "
        f"label scored at least {got['lowest_score']:.3f}"
    )
    if got["mean_score_wrong"] is not None and got["mean_score_right"] is not None:
        line += (
            f", the wrong ones {got['mean_score_wrong']:.3f} on average and the right ones "
            f"{got['mean_score_right']:.3f}"
        )
    return line + "."


def summary_line(campaign: Mapping[str, Any]) -> str:
    """The arms' accuracies for one project, for the terminal."""
    got = campaign.get("governance_arms") or {}
    if not got.get("arms"):
        return "no final model, nothing retrained"
    means = ", ".join(f"{a.name} {got['arms'][a.name]['mean']:.3f}" for a in ARMS)
    delta = got["arms"]["governed-learned"].get("delta_vs_best_other")
    versus = f"; learned vs {delta['other']}: {delta['mean']:+.3f}" if delta else ""
    return f"governance arms ({got['seeds']} seeds): {means}{versus}"
