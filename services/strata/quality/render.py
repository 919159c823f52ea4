"""The dataset quality report as an HTML page with matplotlib plots (PNG)."""

from __future__ import annotations

import html
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from strata.common.pages import embedded_image, fmt, png


def plots(report: dict[str, Any]) -> dict[str, bytes]:
    """PNG plots by file name."""
    out: dict[str, bytes] = {}
    classes = report["classes"]
    slices = report["agreement"]["slices"]

    by_class = [s for s in slices if s["dimension"] == "class"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    values = [
        s["krippendorff_alpha"] if s["krippendorff_alpha"] is not None else 0 for s in by_class
    ]
    ax.bar([s["key"] for s in by_class], values, color="#4c72b0")
    ax.axhline(report["agreement"]["threshold"], color="#c44e52", ls="--", label="threshold")
    ax.set_ylabel("Krippendorff's alpha (class vs rest)")
    ax.set_title("Agreement by class")
    ax.legend(loc="lower right")
    out["agreement_by_class.png"] = png(fig)

    table = np.asarray(report["error_taxonomy"]["counts"], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    rows = table.sum(1, keepdims=True)
    share = np.divide(table, rows, out=np.zeros_like(table), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("label given")
    ax.set_ylabel("consensus")
    ax.set_title("Error taxonomy: answers given per consensus class")
    fig.colorbar(im, ax=ax, fraction=0.046)
    out["error_taxonomy.png"] = png(fig)

    scored = [a for a in report["annotators"] if a["gold_accuracy"] is not None]
    scored.sort(key=lambda a: a["gold_accuracy"])
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(scored) + 1)))
    if scored:
        acc = np.asarray([a["gold_accuracy"] for a in scored])
        lo = np.asarray([a["gold_accuracy_interval"][0] for a in scored])
        hi = np.asarray([a["gold_accuracy_interval"][1] for a in scored])
        colors = [
            {"blocked": "#c44e52", "retrain": "#dd8452"}.get(a["status"], "#55a868") for a in scored
        ]
        y = np.arange(len(scored))
        spread = [np.clip(acc - lo, 0, None), np.clip(hi - acc, 0, None)]
        ax.errorbar(acc, y, xerr=spread, fmt="none", ecolor="#999999")
        ax.scatter(acc, y, c=colors, zorder=3)
        ax.set_yticks(y, [a["annotator_id"] for a in scored])
        ax.axvline(report["gold_threshold"], color="#c44e52", ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("gold accuracy (95% Wilson interval); red: blocked, orange: retrain")
    ax.set_title("Annotators on gold")
    out["gold_accuracy.png"] = png(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2))
    cover = report["coverage"]
    ax.bar(list(cover), list(cover.values()), color="#8172b3")
    ax.set_ylabel("decided items")
    ax.set_title("Coverage per class")
    out["coverage.png"] = png(fig)

    curve = report.get("trust_curve")
    if curve:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.plot([0, 1], [0, 1], color="#999999", ls=":", label="the score at its word")
        ax.plot(curve["scores"], curve["right"], marker="o", color="#4c72b0", label="fitted")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("consensus score")
        ax.set_ylabel("P(label right), from gold")
        ax.set_title(f"Trust curve ({curve['gold_items']} gold items, learned governance)")
        ax.legend(loc="lower right")
        out["trust_curve.png"] = png(fig)

    windows = [s for s in slices if s["dimension"] == "window"]
    if len(windows) > 1:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.plot(
            range(len(windows)),
            [s["krippendorff_alpha"] for s in windows],
            marker="o",
        )
        ax.axhline(report["agreement"]["threshold"], color="#c44e52", ls="--")
        ax.set_xlabel("time window")
        ax.set_ylabel("Krippendorff's alpha")
        ax.set_title("Agreement over time")
        out["agreement_over_time.png"] = png(fig)
    return out


def to_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    """One self-contained page: the plots are embedded as data URIs."""
    agree = report["agreement"]
    overall = agree["overall"]
    verdict = "done" if agree["done"] else "NOT done: agreement under the contract's threshold"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Strata quality report: {html.escape(report['project'])}</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
        f"<h1>Dataset quality report: {html.escape(report['project'])}</h1>",
        f"<p><b>Agreement</b> ({html.escape(agree['metric'])}, threshold "
        f"{agree['threshold']:.2f}): alpha {fmt(overall['krippendorff_alpha'])}, "
        f"Fleiss' kappa {fmt(overall['fleiss_kappa'])}, mean pairwise Cohen's kappa "
        f"{fmt(overall['mean_cohen_kappa'])} over {overall['items']} items: "
        f"<b>{verdict}</b>.</p>",
        f"<p>Items by state: {html.escape(str(report['items']['by_state']))}; "
        f"{report['items']['votes']} human votes; open reviews: "
        f"{html.escape(str(report['items']['in_review']))}.</p>",
    ]
    model = report["model_labels"]
    if model["auto_accepted"] or model["spot_checked"]:
        low, high = model["spot_check_agreement_95"]
        parts.append(
            f"<p><b>Model labels</b>: {model['auto_accepted']} items auto-accepted; humans "
            f"agreed with the model on {fmt(model['spot_check_agreement'])} of "
            f"{model['spot_checked']} spot checks (95% interval {fmt(low)} to "
            f"{fmt(high)}).</p>"
        )
    crowd = report["gold_crowd_accuracy"]
    parts.append(
        f"<p>On {crowd['items']} gold items, majority vote recovers the answer "
        f"{fmt(crowd['majority_vote_accuracy'])} of the time and Dawid-Skene "
        f"{fmt(crowd['dawid_skene_accuracy'])}.</p>"
    )
    trust = report.get("trust_curve")
    if trust:
        parts.append(
            f"<p><b>Trust curve</b>: on {trust['gold_items']} gold items with two votes or "
            f"more, the consensus their votes alone gave was right {trust['gold_right']} "
            "times. The curve (isotonic, shrunk toward that rate while gold is scarce) says "
            "how often a label with a given consensus score is right; training's learned "
            "governance sets each label's depth and gradient scale from it.</p>"
        )
    parts.extend(embedded_image(name, data) for name, data in images.items())
    parts.append(
        "<h2>Annotators</h2><p>Anchoring: of the wrong pre-labels an annotator was shown on "
        "gold (honeypots and the model's own mistakes), the share they agreed with.</p>"
        "<table><tr>"
    )
    columns = [
        "annotator_id",
        "status",
        "labels",
        "gold_answered",
        "gold_accuracy",
        "agreement_with_consensus",
        "estimated_accuracy",
        "wrong_prelabels_shown",
        "anchoring_rate",
        "median_seconds",
    ]
    parts.append("".join(f"<th>{c}</th>" for c in columns) + "</tr>")
    for a in report["annotators"]:
        parts.append("<tr>" + "".join(f"<td>{fmt(a[c])}</td>" for c in columns) + "</tr>")
    parts.append("</table><h2>Most frequent errors</h2><table><tr><th>consensus</th>")
    parts.append("<th>given</th><th>votes</th></tr>")
    for e in report["error_taxonomy"]["top_errors"]:
        parts.append(
            f"<tr><td>{fmt(e['true'])}</td><td>{fmt(e['given'])}</td><td>{e['count']}</td></tr>"
        )
    parts.append("</table><h2>Known limitations</h2><ul>")
    parts.extend(f"<li>{html.escape(n)}</li>" for n in report["limitations"])
    parts.append("</ul></body></html>")
    return "\n".join(parts)
