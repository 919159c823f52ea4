"""The campaign's results: `campaign.json` and the learning curve as a PNG."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from strata.demo.campaign import CampaignResult
from strata.demo.crowd import Annotator


def summary(result: CampaignResult, crowd: list[Annotator]) -> dict[str, Any]:
    return {
        "settings": asdict(result.settings),
        "stopped_because": result.stopped_because,
        "seconds": round(result.seconds, 1),
        "imported": result.imported,
        "human_labels": result.human_labels,
        "final_test_accuracy": result.final_accuracy,
        "learning_curve": [asdict(p) for p in result.curve],
        "labels_by_annotator": result.labels_by_annotator,
        "crowd": {
            a.annotator_id: {"kind": a.kind, "true_accuracy": round(a.accuracy, 3)} for a in crowd
        },
        "blocked": result.blocked,
        "errors": result.errors,
    }


def learning_curve_png(result: CampaignResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [p.human_labels for p in result.curve]
    ax.plot(labels, [p.test_accuracy for p in result.curve], "o-", label=result.settings.strategy)
    for p in result.curve:
        ax.annotate(p.model_version, (p.human_labels, p.test_accuracy), fontsize=7)
    ax.axhline(result.settings.target_accuracy, color="grey", linestyle="--", label="target")
    ax.set_xlabel("human labels spent")
    ax.set_ylabel("test accuracy (split nobody labelled)")
    ax.set_title("Learning curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: CampaignResult, crowd: list[Annotator], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "campaign.json"
    path.write_text(json.dumps(summary(result, crowd), indent=2) + "\n")
    if result.curve:
        learning_curve_png(result, out_dir / "learning_curve.png")
    return path
