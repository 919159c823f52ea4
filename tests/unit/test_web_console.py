"""The console's shaping and charts, without servers: what the pages and /api show is
computed from the services' messages here (the browser tier checks it against them)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from strata.v1 import (
    common_pb2,
    gateway_pb2,
    inference_pb2,
    quality_pb2,
    sampler_pb2,
    training_pb2,
)
from strata.web import charts, insight


def test_ticks_are_round_and_cover_the_range() -> None:
    assert charts.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = charts.nice_ticks(3, 997)
    assert ticks[0] <= 3 and ticks[-1] >= 997 and len(ticks) <= 7
    assert charts.nice_ticks(5, 5)[-1] > 5  # a flat series still gets an axis


def test_a_chart_is_valid_svg_that_names_its_series_and_says_when_empty() -> None:
    svg = charts.line_chart(
        [charts.Series("labels", [(0, 0), (3600, 40)]), charts.Series("empty", [])],
        title="t <&>",
        x_label="time",
        y_label="n",
        x_format="time",
    )
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and "labels: from 0 to 40" in (root.get("aria-label") or "")
    assert "empty" not in (root.get("aria-label") or "")
    assert len(root.findall("{*}polyline")) == 1 or len(root.findall("polyline")) == 1
    empty = charts.line_chart([], title="nothing", x_label="x", y_label="y")
    assert "Nothing to draw yet" in empty
    ET.fromstring(empty)


def test_heat_colours_run_red_to_blue_and_grey_when_undefined() -> None:
    assert charts.heat_colour(1.0)[0] == "#1f5fbf"
    assert charts.heat_colour(-1.0)[0] == "#b42318"
    assert charts.heat_colour(0.0)[0] == "#ffffff"
    assert charts.heat_colour(None) == charts.heat_colour(math.nan) == ("#eceff3", "#5b6470")


def test_the_queue_says_how_old_the_oldest_lease_is() -> None:
    q = gateway_pb2.QueueStatsResponse(ready=5, leased=2, labels_last_hour=30)
    q.oldest_lease_at.FromDatetime(datetime(2026, 1, 1, 12, 0, 0))
    view = insight.queue_view(q, datetime(2026, 1, 1, 12, 2, 30, tzinfo=UTC))
    assert view["oldest_lease_seconds"] == 150 and view["labels_last_hour"] == 30
    none = insight.queue_view(gateway_pb2.QueueStatsResponse(), datetime.now(UTC))
    assert none["oldest_lease_seconds"] is None and none["oldest_lease_annotator"] is None
    assert none["labelled"] == 0 and none["items_by_state"] == {}


def test_the_queue_says_how_many_items_wait_for_consensus() -> None:
    q = gateway_pb2.QueueStatsResponse(
        completed=4, items_by_state={"queued": 2, "labelled": 3, "review": 1, "completed": 4}
    )
    view = insight.queue_view(q, datetime.now(UTC))
    assert view["labelled"] == 3 and view["items_by_state"]["review"] == 1


def test_the_burndown_counts_every_stage_and_accumulates_its_buckets() -> None:
    progress = quality_pb2.ProjectProgressResponse(
        bucket_seconds=1800,
        items_by_state={"open": 3, "accepted": 5, "review": 2, "expert": 1},
        decided_by_model=2,
        open_reviews=2,
    )
    for i, (labels, decided, opened, resolved) in enumerate([(10, 2, 1, 0), (6, 4, 2, 1)]):
        b = progress.buckets.add(
            human_labels=labels, decided=decided, reviews_opened=opened, reviews_resolved=resolved
        )
        b.start.FromSeconds(1_800_000_000 + i * 1800)
    pool = sampler_pb2.PoolStatsResponse(
        items_by_state={
            "pool": 18,
            "inflight": 4,
            "review": 2,
            "labeled": 6,
            "gold": 5,
            "duplicate": 1,
        }
    )
    view = insight.progress_view(progress, pool)
    # Imported: every item the pool took, waiting, handed out, in review or labeled.
    assert view["counts"] == {
        "imported": 30,
        "queued": 4,
        "labeled": 6,
        "accepted": 6,
        "in_review": 2,
        "labelled_by_model": 2,
        "gold": 5,
        "duplicates": 1,
    }
    assert [b["human_labels"] for b in view["buckets"]] == [10, 6]
    # Cumulative on the chart: 30 imported, 2 then 6 decided -> 28 then 24 undecided;
    # 1 then 2 reviews open; 16 labels in all, at 20 and 12 an hour.
    burndown = view["burndown_svg"]
    assert "undecided: from 30 to 24" in burndown and "human labels: from 0 to 16" in burndown
    assert "labels / hour: from 20 to 12" in view["throughput_svg"]
    assert "open reviews: from 1 to 2" in view["backlog_svg"]


def test_the_heatmap_is_symmetric_links_each_pair_and_greys_the_undefined() -> None:
    report = quality_pb2.AgreementReportResponse(metric="krippendorff_alpha", threshold=0.6)
    report.slices.add(dimension="class", key="cat", krippendorff_alpha=0.9, items=10)
    report.slices.add(dimension="class", key="dog", krippendorff_alpha=0.2, items=8)
    report.slices.add(dimension="annotator", key="ann", krippendorff_alpha=0.5, items=8)
    pairs = quality_pb2.PairwiseAgreementResponse(annotators=["a", "b", "c"])
    pairs.pairs.add(a="a", b="b", shared_items=10, agreed=9, cohen_kappa=0.8)
    pairs.pairs.add(a="a", b="c", shared_items=1, agreed=1, cohen_kappa=math.nan)
    view = insight.agreement_view(report, pairs)
    assert [c["class_label"] for c in view["by_class"]] == ["dog", "cat"]  # lowest first
    grid = {(r["annotator"], c.get("b")): c for r in view["heatmap"] for c in r["cells"]}
    assert grid[("a", "b")]["pair"] == grid[("b", None) if False else ("b", "a")]["pair"]
    assert grid[("b", "a")]["pair"]["disagreed"] == 1 and grid[("b", "a")]["a"] == "b"
    assert grid[("a", "c")]["pair"]["kappa"] is None
    assert grid[("a", "c")]["heat"] == "heat-na" and grid[("a", "b")]["heat"] == "heat-p8"
    assert grid[("b", "c")]["pair"] is None  # never shared an item
    assert view["pairs"][1]["cohen_kappa"] is None


def test_models_pair_versions_with_their_runs_labels_for_the_learning_curve() -> None:
    listed = inference_pb2.ListModelsResponse()
    for version, run, acc, gold, serving in (
        ("v2", "r2", 0.9, 0.85, True),
        ("v1", "r1", 0.7, 0.0, False),
        ("v0", "gone", 0.5, 0.4, False),
    ):
        m = listed.models.add(
            model_version=version,
            run_id=run,
            gold_accuracy=gold,
            n_gold=40 if gold else 0,
            status="loaded",
            serving=serving,
            ece_before=0.1,
            ece_after=0.03,
            calibrated=True,
            metrics=common_pb2.ModelMetrics(accuracy=acc, n_eval=100),
        )
        m.published_at.FromSeconds(1_800_000_000 + int(acc * 100))
    runs = training_pb2.ListRunsResponse()
    runs.runs.add(run=training_pb2.Run(run_id="r2", state=3), n_labels=400)
    runs.runs.add(run=training_pb2.Run(run_id="r1", state=3), n_labels=200)
    view = insight.models_view(listed, runs)
    assert view["serving"] == "v2"
    by = {v["model_version"]: v for v in view["versions"]}
    assert by["v2"]["labels"] == 400 and by["v0"]["labels"] is None
    # Training's figure on held-out gold first; inference's when training kept none.
    assert by["v2"]["gold_accuracy"] == 0.9 and by["v2"]["n_gold"] == 100
    assert by["v0"]["gold_accuracy"] == 0.5
    listed.models[2].ClearField("metrics")
    assert insight.models_view(listed, runs)["versions"][2]["gold_accuracy"] == 0.4
    assert "gold accuracy: from 0.7 to 0.9" in view["learning_curve_svg"]
    assert "ECE: from 0.03 to 0.03" in view["learning_curve_svg"]
    assert view["runs"][0]["state"] == "succeeded"


def test_lineage_orders_groups_from_the_head_and_scales_bars_to_the_largest() -> None:
    reply = training_pb2.ItemLineageResponse()
    reply.runs.add(
        run_id="r1",
        model_version="v1",
        value="cat",
        consensus_score=0.97,
        influence_depth=2,
        influence_by_group=[0.5, 0.25, 0.0],
        layer_groups=["head", "mid", "stem"],
    )
    (run,) = insight.lineage_view(reply)
    assert [(g["name"], g["share"]) for g in run["groups"]] == [
        ("head", 100.0),
        ("mid", 50.0),
        ("stem", 0.0),
    ]
    assert run["influence_depth"] == 2


def test_the_stylesheet_carries_every_heatmap_step() -> None:
    """Cells are coloured by class (the pages' CSP allows no inline style)."""
    css = (Path(charts.__file__).parent / "static" / "app.css").read_text()
    assert charts.heat_css() in css
    assert charts.heat_class(-0.04) == "heat-p0" and charts.heat_class(-0.06) == "heat-m1"
