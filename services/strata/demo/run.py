"""The demo's main job: an active-learning campaign and a random-sampling baseline on the
same budget, side by side through the same running stack, then everything gathered
into `demo-output/`.

Two projects run at once: `digits` ranks the pool by margin, `digits-random` hands
out random items; each has its own crowd of the same skills (annotator ids are
global, so the baseline's carry a prefix). When both stop, the services are asked
for what they know (quality's report and export, training's depth profiles,
memorization flags, ledger and traced influences, every service's metrics, the
dead-letter topic) and the campaign report puts it next to the truth the simulation
knows: among others, which of the labels the final model trained on are wrong, and
where TracIn ranks each planted twin's wrong label when its original is traced.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from strata.cli.progress import StatusLine, bar
from strata.demo import analysis, arms
from strata.demo.campaign import CLASSES, Campaign
from strata.demo.crowd import digits_crowd
from strata.demo.gather import (
    TWIN_TOP_K,
    Endpoints,
    Gathered,
    dead_letters,
    existing_projects,
    gather,
    service_counters,
)
from strata.demo.results import CampaignResult, CampaignSettings, Tick

__all__ = ["Endpoints", "Plan", "demo", "plan"]

BASELINE_PREFIX = "rnd-"
# The report's second verdict averages this many consecutive models on both curves:
# one model's test accuracy moves by up to 0.02 between versions (labels arrive,
# training is seeded afresh), which the single-model verdict takes at face value.
SMOOTHING = 3


@dataclass(frozen=True)
class Plan:
    active: CampaignSettings
    baseline: CampaignSettings
    traced_items: int = 3  # test items whose most influential labels the report shows
    # Seeds each final training set is retrained for under every governance arm.
    arm_seeds: int = 3


def plan(fast: bool) -> Plan:
    """The full campaign, or the small one the e2e test runs (under 3 minutes)."""
    active = (
        CampaignSettings(
            pool=400,
            gold=50,
            label_budget=500,
            target_accuracy=0.97,
            retrain_every=12,
            # Slow enough that the first model arrives well before the budget is spent,
            # so the active campaign's later batches are ranked by it even when the
            # machine is busy (the e2e test runs beside other tests).
            pace=0.4,
            max_seconds=120.0,
            # Fewer twins: each is a wrong label among the short campaign's few hundred.
            twins=4,
            # A short campaign: more gold, and more honeypots among gold's pre-labels, so
            # that its copycat meets enough wrong gold pre-labels to be judged (the full
            # campaign gathers them at 0.1 and 0.5); at 0.4 and 0.5 the active campaign's
            # copycat still met only 3 of the 4 needed now and then (most gold tasks come
            # before the first model, so show no pre-label at all).
            gold_rate=0.4,
            honeypot_rate=0.8,
        )
        if fast
        else CampaignSettings()
    )
    baseline = replace(active, project="digits-random", strategy="random", stop_at_target=False)
    return Plan(active, baseline, arm_seeds=2 if fast else 3)


def fresh_projects(p: Plan, taken: set[str]) -> Plan:
    """`p` with project names nobody used yet: on a database an earlier demo left, the
    campaigns run in new projects (`digits-2` and `digits-random-2`, then `-3`, ...)
    rather than into the earlier contract, labels and spent budget."""
    names = (p.active.project, p.baseline.project)
    n = 1
    while any((f"{name}-{n}" if n > 1 else name) in taken for name in names):
        n += 1
    if n == 1:
        return p
    return replace(
        p,
        active=replace(p.active, project=f"{names[0]}-{n}"),
        baseline=replace(p.baseline, project=f"{names[1]}-{n}"),
    )


def _line(ticks: dict[str, Tick]) -> str:
    parts = []
    for t in ticks.values():
        model = f"{t.model} acc {t.accuracy:.3f}" if t.model else "no model yet"
        alpha = f" alpha {t.alpha:.2f}" if t.alpha is not None else ""
        rate = t.labels / t.seconds if t.seconds > 0 else 0.0
        parts.append(
            f"{t.strategy:<6} {bar(t.labels / max(1, t.budget), 16)} {t.labels}/{t.budget} "
            f"consensus {t.consensus} {model}{alpha} {rate:.1f}/s"
        )
    blocked = sorted({b for t in ticks.values() for b in t.blocked})
    return "  " + " | ".join(parts) + (f" | blocked: {', '.join(blocked)}" if blocked else "")


def run_campaigns(endpoints: Endpoints, p: Plan, status: StatusLine) -> list[CampaignResult]:
    """Both campaigns at once, with one live status line; results in plan order."""
    campaigns = [
        Campaign(endpoints.grpc, endpoints.admin_token, p.active, digits_crowd(), endpoints.tls),
        Campaign(
            endpoints.grpc,
            endpoints.admin_token,
            p.baseline,
            digits_crowd(prefix=BASELINE_PREFIX),
            endpoints.tls,
        ),
    ]
    ticks: dict[str, Tick] = {}
    seen: set[tuple[str, str]] = set()
    results: dict[str, CampaignResult] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def on_tick(tick: Tick) -> None:
        with lock:
            ticks[tick.project] = tick
            if tick.model and (tick.project, tick.model) not in seen:
                seen.add((tick.project, tick.model))
                status.say(
                    f"  {tick.project}: model {tick.model} serving, test accuracy "
                    f"{tick.accuracy:.3f} ({tick.labels} human labels so far)"
                )

    def work(c: Campaign) -> None:
        try:
            results[c.s.project] = c.run(on_tick)
        except BaseException as exc:  # shown by the caller; the other campaign goes on
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in campaigns]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(1.0)
            with lock:
                if ticks:
                    status.update(_line(ticks))
    finally:
        status.close()
        for c in campaigns:
            c.close()
    if failures:
        raise failures[0]
    return [results[p.active.project], results[p.baseline.project]]


def item_truth(result: CampaignResult) -> dict[str, int]:
    """The true class of every item the crowd saw (the simulation knows it)."""
    return {s.item_id: s.truth for s in result.submitted}


def project_findings(
    result: CampaignResult, got: Gathered, crowd_kinds: dict[str, str]
) -> dict[str, Any]:
    """The report's figures for one project, from the services' answers and the truth."""
    truth = item_truth(result)
    estimated = {
        a["annotator_id"]: a["estimated_accuracy"]
        for a in got.quality_report.get("annotators", [])
        if a.get("estimated_accuracy") is not None
    }
    observed = analysis.observed_accuracy(result.submitted)
    rho, order = analysis.annotator_ranking(estimated, observed)
    flags = [f.item_id for f in got.depth.memorization_flags] if got.depth else []
    # What the final model trained on; quality's accepted labels when there is no model.
    trained = got.trained or {r["item_id"]: r["value"] for r in got.exported}
    planted = [t.twin_item for t in result.twins if t.twin_item]
    return {
        "human_labels": result.human_labels,
        "final_model": result.curve[-1].model_version if result.curve else "",
        "final_test_accuracy": result.final_accuracy,
        "accepted_labels_exported": len(got.exported),
        "quality_items_by_state": got.quality_report["items"]["by_state"],
        "label_studio_tasks": got.label_studio_tasks,
        "crowd_accuracy": analysis.crowd_accuracy(got.exported, truth, CLASSES),
        "annotator_ranking": {
            "spearman_estimated_vs_observed": rho,
            "by_estimate": [
                {
                    "annotator_id": a,
                    "kind": crowd_kinds.get(a, "?"),
                    "estimated_accuracy": round(estimated[a], 4),
                    "observed_accuracy": round(observed.get(a, float("nan")), 4),
                    "blocked": a in result.blocked,
                }
                for a in order
            ],
        },
        "anchoring": anchoring_rows(result, got, crowd_kinds),
        "memorization": {
            "training_labels_of": "final model" if got.trained else "quality's export",
            **analysis.memorization_vs_corruption(
                flags,
                trained,
                truth,
                CLASSES,
                result.submitted,
                crowd_kinds,
                planted,
                got.ever_trained if got.trained else None,
            ),
        },
        "twins": analysis.twin_tracin(got.twin_traces, near=5, top_k=TWIN_TOP_K),
        "depth_profiles": {
            "layer_groups": list(got.depth.layer_groups) if got.depth else [],
            "entropy_by_class": {
                p.class_label: [round(v, 4) for v in p.entropy_by_group]
                for p in (got.depth.profiles if got.depth else [])
            },
        },
        "traced_influences": got.traced,
    }


def anchoring_rows(
    result: CampaignResult, got: Gathered, crowd_kinds: dict[str, str]
) -> list[dict[str, Any]]:
    """Every annotator's anchoring: quality's rate on gold (what gold scoring uses) beside
    the rate the simulation observed on every task whose pre-label was wrong."""
    scored = {a["annotator_id"]: a for a in got.quality_report.get("annotators", [])}
    observed = analysis.observed_anchoring(result.submitted)
    rows = []
    for annotator in sorted(crowd_kinds):
        q = scored.get(annotator, {})
        followed, shown = observed.get(annotator, (0, 0))
        rows.append(
            {
                "annotator_id": annotator,
                "kind": crowd_kinds[annotator],
                "wrong_prelabels_on_gold": q.get("wrong_prelabels_shown", 0),
                "anchoring_rate_on_gold": q.get("anchoring_rate"),
                "anchoring_interval_on_gold": q.get("anchoring_interval"),
                "wrong_prelabels_seen": shown,
                "observed_anchoring_rate": followed / shown if shown else None,
                "blocked": annotator in result.blocked,
                "why": result.blocked.get(annotator, ""),
            }
        )
    return rows


def comparison(active: CampaignResult, baseline: CampaignResult) -> dict[str, Any]:
    """Labels active learning needed to reach the baseline's final accuracy and the target."""
    reference = baseline.final_accuracy
    needed = analysis.labels_to_reach(active.curve, reference)
    share = needed / baseline.human_labels if needed is not None and baseline.human_labels else None
    to_target = analysis.labels_to_reach(active.curve, active.settings.target_accuracy)
    base_to_target = analysis.labels_to_reach(baseline.curve, active.settings.target_accuracy)
    if share is not None:
        verdict = (
            f"Active learning reached the baseline's final accuracy ({reference:.3f}) with "
            f"{needed} human labels, {share:.0%} of the baseline's {baseline.human_labels}."
        )
    elif active.stopped_because == "target accuracy":
        verdict = (
            f"Active learning stopped at the target ({active.settings.target_accuracy}) before "
            f"the baseline's final accuracy ({reference:.3f}), which it did not reach."
        )
    else:
        verdict = (
            f"Active learning did not reach the baseline's final accuracy ({reference:.3f}) "
            "within its budget."
        )
    if to_target is not None and base_to_target is not None:
        verdict += (
            f" To reach the target {active.settings.target_accuracy}: {to_target} labels with "
            f"active learning, {base_to_target} at random ({to_target / base_to_target:.0%})."
        )
    by_budget = analysis.savings_by_budget(active.curve, baseline.curve, SMOOTHING)
    smoothed = by_budget[-1] if by_budget else None
    if smoothed is not None:
        verdict += (
            f" Smoothed over {SMOOTHING} consecutive models on both sides: the baseline ends "
            f"at {smoothed.baseline_accuracy:.3f}, "
            + (
                f"which active learning reached with {smoothed.active_labels} labels "
                f"({smoothed.share:.0%})."
                if smoothed.share is not None
                else "which active learning did not reach"
                + (
                    " before one model stopped it at its target."
                    if active.stopped_because == "target accuracy"
                    else "."
                )
            )
        )
    return {
        "verdict": verdict,
        "baseline_final_test_accuracy": reference,
        "baseline_human_labels": baseline.human_labels,
        "active_labels_to_reach_baseline_final": needed,
        "share_of_baseline_labels": share,
        "target_accuracy": active.settings.target_accuracy,
        "active_labels_to_reach_target": to_target,
        "baseline_labels_to_reach_target": base_to_target,
        "smoothing_window": SMOOTHING,
        "smoothed": None if smoothed is None else smoothed.to_dict(),
        "by_budget": [s.to_dict() for s in by_budget],
    }


def wrong_labels_line(findings: dict[str, Any]) -> str:
    """What one project's final model made of the wrong labels it trained on, in a line."""
    mem, twins = findings["memorization"], findings["twins"]

    def share(x: float | None) -> str:
        return "undefined" if x is None else f"{x:.2f}"

    ring = next((r for r in mem["corrupted_by_kind"] if r["kind"] == "corruptor"), None)
    line = (
        f"{mem['wrong_training_labels']} wrong of the final model's {mem['training_labels']} "
        f"training labels ({mem['wrong_labels_in_any_run']} wrong in some run"
        + (
            f", {ring['in_any_run_with_their_wrong_class']} of them the ring's"
            if ring is not None
            else ""
        )
        + f"); memorization flags {mem['flagged']}, precision {share(mem['precision'])}, "
        f"recall {share(mem['recall'])}"
    )
    if twins["measured"]:
        median = twins["median_rank"]
        line += (
            f"; TracIn ranks {twins['measured']} mislabeled twins at median "
            f"{'beyond every opposing label' if median is None else f'{median:g}'} among the "
            f"labels opposing their originals ({twins['in_top_near']:.0%} in the top "
            f"{twins['near']}, {twins['in_top_k']:.0%} in the top {twins['top_k']})"
        )
    return line


def demo(endpoints: Endpoints, p: Plan, out_dir: Path, status: StatusLine) -> int:
    """Run both campaigns, gather what the services know, write the campaign report."""
    from strata.demo import report
    from strata.demo.split import digits_split

    p = fresh_projects(p, existing_projects(endpoints))
    a, b = p.active, p.baseline
    status.say(
        f"Labeling campaigns on digits, side by side: {a.pool} pool items, {a.gold} gold, "
        f"budget {a.label_budget} human labels each, target test accuracy {a.target_accuracy}, "
        f"retrain every {a.retrain_every} consensus labels; {a.project}: {a.strategy} "
        f"sampling, {b.project}: {b.strategy} sampling (the baseline)"
    )
    active, baseline = run_campaigns(endpoints, p, status)
    status.say("Gathering the quality reports, exports, depth profiles and traced influences...")
    findings = {}
    for result, prefix in ((active, ""), (baseline, BASELINE_PREFIX)):
        s = result.settings
        split = digits_split(s.pool, s.gold, s.seed, s.twins)
        got = gather(endpoints, result, split, out_dir, p.traced_items)
        kinds = {x.annotator_id: x.kind for x in digits_crowd(prefix=prefix)}
        findings[result.settings.project] = found = project_findings(result, got, kinds)
        status.say(
            f"  {s.project}: retraining the final training set under each governance arm "
            f"({len(arms.ARMS)} arms x {p.arm_seeds} seeds)..."
        )
        found["trust_curve"] = got.quality_report.get("trust_curve")
        exported = {
            r["item_id"]: r["data"]["features"] for r in got.exported if "features" in r["data"]
        }
        found["governance_arms"] = arms.retrain(
            got.trained,
            got.trained_scores,
            exported | result.features,
            item_truth(result),
            CLASSES,
            split.x[split.test],
            split.y[split.test],
            found["trust_curve"],
            p.arm_seeds,
        )
    counters, unreadable = service_counters(endpoints)
    dlq = dead_letters(endpoints.kafka_bootstrap)
    compared = comparison(active, baseline)
    page = report.write(
        report.CampaignReport(
            active=active,
            baseline=baseline,
            findings=findings,
            comparison=compared,
            counters=counters,
            unreadable_metrics=unreadable,
            dead_letters=dlq,
        ),
        digits_crowd(),
        out_dir,
    )
    status.say(
        f"Active learning ({active.settings.strategy}): final test accuracy "
        f"{active.final_accuracy:.3f} after {active.human_labels} human labels "
        f"({active.stopped_because}); random baseline: {baseline.final_accuracy:.3f} after "
        f"{baseline.human_labels} ({baseline.stopped_because}). " + compared["verdict"]
    )
    for project, f in findings.items():
        status.say(f"  {project}: " + wrong_labels_line(f))
        status.say(f"  {project}: " + arms.summary_line(f))
    blocked = sorted(set(active.blocked) | set(baseline.blocked))
    status.say(f"Blocked by quality: {', '.join(blocked) or 'none'}; dead letters: {len(dlq)}")
    status.say(f"Report: {page}  (campaign.json, plots, quality reports and exports beside it)")
    return 0 if active.curve and baseline.curve else 1
