"""The dataset quality report on a simulated crowd with known truth (no I/O)."""

from __future__ import annotations

import numpy as np
from strata.quality.aggregation import dawid_skene
from strata.quality.render import plots, to_html
from strata.quality.report import ProjectData, build_report

CLASSES = ["cat", "dog", "bird", "fish"]


def crowd(seed: int = 0) -> ProjectData:
    rng = np.random.default_rng(seed)
    skills = {"ace": 0.95, "solid": 0.85, "ok": 0.75, "spammer": None}
    votes: list[tuple[str, str, str, str | None]] = []
    item_value: dict[str, str | None] = {}
    item_state: dict[str, str] = {}
    for n in range(300):
        truth = int(rng.integers(0, 4))
        gold = n < 60
        item = f"{'g' if gold else 'i'}{n}"
        for annotator, skill in skills.items():
            if skill is None:
                given = 0  # always "cat"
            elif rng.random() < skill:
                given = truth
            else:
                given = int((truth + rng.integers(1, 4)) % 4)
            votes.append((item, annotator, CLASSES[given], CLASSES[truth] if gold else None))
        if not gold:
            item_value[item] = CLASSES[truth]
            item_state[item] = "accepted"
    item_state["i299"] = "review"
    _, item_idx = np.unique([v[0] for v in votes], return_inverse=True)
    annotators, ann_idx = np.unique([v[1] for v in votes], return_inverse=True)
    fit = dawid_skene(item_idx, ann_idx, [CLASSES.index(v[2]) for v in votes], 4)
    return ProjectData(
        project="p",
        classes=CLASSES,
        agreement_metric="krippendorff_alpha",
        agreement_threshold=0.5,
        gold_threshold=0.7,
        vote_item=[v[0] for v in votes],
        vote_annotator=[v[1] for v in votes],
        vote_value=[v[2] for v in votes],
        vote_time=[1_700_000_000.0 + i for i in range(len(votes))],
        vote_duration_ms=[2000] * len(votes),
        vote_gold_answer=[v[3] for v in votes],
        item_state=item_state,
        item_value=item_value,
        gold={"ace": (60, 57), "spammer": (60, 15)},
        status={"spammer": "blocked"},
        confusions={str(a): fit.confusions[j] for j, a in enumerate(annotators)},
        class_priors=fit.class_priors,
        open_reviews={"expert": 1},
        review_items=["i299"],
    )


def test_report_ranks_annotators_and_explains_errors() -> None:
    report = build_report(crowd(), window_s=600)
    scores = {a["annotator_id"]: a for a in report["annotators"]}
    estimated = sorted(scores, key=lambda a: -scores[a]["estimated_accuracy"])
    assert estimated == ["ace", "solid", "ok", "spammer"]
    agreed = {a: scores[a]["agreement_with_consensus"] for a in scores}
    assert agreed["ace"] > agreed["ok"] > agreed["spammer"]
    assert scores["spammer"]["gold_accuracy"] == 0.25
    assert scores["spammer"]["status"] == "blocked"
    # The spammer's constant "cat" is the commonest error.
    assert report["error_taxonomy"]["top_errors"][0]["given"] == "cat"
    crowd_acc = report["gold_crowd_accuracy"]
    assert crowd_acc["items"] == 60
    assert crowd_acc["dawid_skene_accuracy"] >= crowd_acc["majority_vote_accuracy"]
    assert sum(report["coverage"].values()) == 239
    assert report["items"]["in_review"] == {"expert": 1}
    assert any("no model predictions" in n for n in report["limitations"])
    windows = [s for s in report["agreement"]["slices"] if s["dimension"] == "window"]
    assert len(windows) == 2 and all("done" in w for w in windows)
    classes = [s for s in report["agreement"]["slices"] if s["dimension"] == "class"]
    assert [s["key"] for s in classes] == CLASSES


def test_html_embeds_every_plot() -> None:
    report = build_report(crowd())
    images = plots(report)
    assert {"agreement_by_class.png", "error_taxonomy.png", "gold_accuracy.png"} <= set(images)
    assert all(png.startswith(b"\x89PNG") for png in images.values())
    page = to_html(report, images)
    assert page.count("data:image/png;base64,") == len(images)
    assert "Known limitations" in page


def test_empty_project_reports_without_figures() -> None:
    data = crowd()
    empty = ProjectData(
        **{
            **data.__dict__,
            "vote_item": [],
            "vote_annotator": [],
            "vote_value": [],
            "vote_time": [],
            "vote_duration_ms": [],
            "vote_gold_answer": [],
            "item_state": {},
            "item_value": {},
            "gold": {},
            "class_priors": None,
            "confusions": {},
        }
    )
    report = build_report(empty)
    assert report["agreement"]["overall"]["items"] == 0
    assert report["agreement"]["done"] is False
    assert any("agreement is undefined" in n for n in report["limitations"])
    to_html(report, plots(report))
