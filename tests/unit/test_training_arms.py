"""The governance arms (`strata.training.arms`) and the demo report's retraining of a
final training set under each of them (`strata.demo.arms`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from strata.common import trust
from strata.demo import arms as demo_arms
from strata.gateway.contract import default_governance
from strata.models.families import ModelSpec, build
from strata.training.arms import ARM_NAMES, ARMS, Scored, Task, Treatment, summarise, train
from strata.training.config import TrainingConfig
from strata.training.governance import NO_GOLD
from strata.training.schedule import Schedule, epochs_for, service_schedule

SCORES = np.array([0.95, 0.8, 0.5, 0.1])


def scored(curve: trust.TrustCurve = NO_GOLD) -> Scored:
    return Scored(SCORES, 10, 3, curve, default_governance())


def arm(name: str):  # type: ignore[no-untyped-def]
    return next(a for a in ARMS if a.name == name)


def test_each_arm_treats_the_labels_its_own_way() -> None:
    assert ARM_NAMES == ["ungoverned", "drop", "weighted", "governed-rules", "governed-learned"]
    assert arm("ungoverned").treat(scored()) == Treatment()
    assert arm("drop").treat(scored()).keep.tolist() == [True, True, False, False]
    assert arm("weighted").treat(scored()).weight.tolist() == SCORES.tolist()
    # The default contract is learned, but the rules arm applies its rules: >= 0.9 every
    # group, >= 0.7 two, else the head only.
    rules = arm("governed-rules").treat(scored())
    assert rules.depth.tolist() == [3, 2, 1, 1]
    assert rules.scale.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]]
    # Learned, with no gold: every label trusted, full depth at full scale.
    learned = arm("governed-learned").treat(scored())
    assert learned.depth.tolist() == [3, 3, 3, 3] and np.all(learned.scale == 1)
    # Learned on gold where low scores are wrong: (10 t - 1) / 9, the head only under
    # trust 0.5, nothing at trust 0.1 or less.
    curve = trust.TrustCurve((0.0, 0.5, 0.9, 1.0), (0.05, 0.3, 0.9, 1.0), 50, 10.0)
    learned = arm("governed-learned").treat(scored(curve))
    t = curve(SCORES)
    assert learned.depth.tolist() == [3, 3, 1, 0]
    np.testing.assert_allclose(learned.scale[:, 0], np.clip((10 * t - 1) / 9, 0, 1), rtol=1e-6)
    assert learned.scale[2, 1:].tolist() == [0, 0] and not learned.scale[3].any()


def _task(seed: int = 0, n: int = 120) -> tuple[Task, np.ndarray]:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 8)) + 2.0 * np.eye(3, 8)[y]).astype(np.float32)
    test_y = rng.integers(0, 3, 200)
    test_x = (rng.normal(size=(200, 8)) + 2.0 * np.eye(3, 8)[test_y]).astype(np.float32)
    features = torch.from_numpy(x)
    task = Task(
        ModelSpec("mlp", ["a", "b", "c"], input_dim=8),
        lambda rows: (features[torch.from_numpy(rows)],),
        (torch.from_numpy(test_x),),
        torch.from_numpy(test_y),
    )
    return task, y.astype(np.int64)


def test_arms_that_keep_every_label_whole_train_as_ungoverned_does() -> None:
    task, y = _task()
    schedule = Schedule(steps=40, batch=16)
    s = Scored(np.ones(len(y)), 3, 3, NO_GOLD, default_governance())
    base = train(task, y, arm("ungoverned").treat(s), 0, schedule)
    assert train(task, y, arm("drop").treat(s), 0, schedule) == base  # nothing dropped
    for name in ("weighted", "governed-rules", "governed-learned"):  # all at scale 1
        assert train(task, y, arm(name).treat(s), 0, schedule) == pytest.approx(base, abs=0.011)
    assert base > 0.8
    # Seeded: the same run gives the same accuracy, averaged weights too.
    averaged = Schedule(steps=40, batch=16, average_decay=0.9)
    once = train(task, y, arm("ungoverned").treat(s), 1, averaged)
    assert train(task, y, arm("ungoverned").treat(s), 1, averaged) == once


def test_summary_and_its_paired_difference_match_scipy() -> None:
    per_seed = {a.name: [0.8 + 0.01 * i + 0.001 * s for s in range(4)] for i, a in enumerate(ARMS)}
    per_seed["governed-rules"] = [0.7, 0.72, 0.69, 0.71]
    out = summarise(per_seed, ARMS)
    values = per_seed["drop"]
    low, high = stats.t.interval(
        0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
    )
    assert out["drop"]["ci95"] == [round(low, 4), round(high, 4)]
    learned = out["governed-learned"]["delta_vs_best_other"]
    assert learned["other"] == "weighted"  # the best of the others by mean
    assert learned["per_seed"] == pytest.approx([0.02] * 4, abs=1e-9)
    assert out["governed-rules"]["delta_vs_best_other"]["other"] == "governed-learned"
    assert "delta_vs_best_other" not in out["drop"]


def test_the_service_schedule_is_a_runs() -> None:
    c = TrainingConfig()
    for n in (10, 300, 5000):
        got = service_schedule(n, c)
        epochs = epochs_for(c.epochs, n, c.batch_size, c.min_steps)
        assert got.steps == epochs * -(-n // c.batch_size) >= c.min_steps
        assert (got.batch, got.lr, got.average_decay) == (c.batch_size, c.lr, c.average_decay)


def test_the_demo_retrains_the_final_training_set_under_every_arm() -> None:
    task, y = _task(n=90)
    x = task.inputs(np.arange(90))[0].numpy()
    classes = ["a", "b", "c"]
    # The ledger's values (ten wrong) and scores; the items' features, but not those of
    # one trained item (skipped); one item with features the model never trained on.
    features = {f"i{i}": x[i].tolist() for i in range(90)} | {"i90": [0.0] * 8}
    trained = {f"i{i}": classes[(y[i] + (i < 10)) % 3] for i in range(90)} | {"gone": "a"}
    scores = {f"i{i}": 0.6 + i / 300 for i in range(90)} | {"gone": 0.9}
    truth = {f"i{i}": int(y[i]) for i in range(90)}
    test_x, test_y = task.test_inputs[0].numpy(), task.test_y.numpy()
    curve = trust.fit(np.linspace(0.6, 0.9, 30), np.arange(30) >= 5)
    report_curve = {
        "gold_items": curve.gold,
        "gold_right": 25,
        "prior_strength": curve.prior_strength,
        "scores": list(curve.scores),
        "right": list(curve.right),
    }
    assert demo_arms.curve_of(report_curve) == curve and demo_arms.curve_of(None) is None
    got = demo_arms.retrain(
        trained, scores, features, truth, classes, test_x, test_y, report_curve, 2
    )
    assert (got["labels"], got["skipped"], got["wrong_labels"], got["seeds"]) == (90, 1, 10, 2)
    assert got["scored_under_0.7"] == 30 and got["lowest_score"] == 0.6
    assert (got["mean_score_wrong"], got["mean_score_right"]) == (0.615, 0.765)
    assert got["steps"] == service_schedule(90).steps
    assert set(got["arms"]) == set(ARM_NAMES)
    assert all(len(a["per_seed"]) == 2 and 0 <= a["mean"] <= 1 for a in got["arms"].values())
    # The report: both plots and a table row per project with a final model.
    campaign = {"settings": {"project": "digits"}, "governance_arms": got}
    images = {
        "governance_arms.png": demo_arms.arms_plot({"digits": got}),
        "trust_curves.png": demo_arms.trust_plot({"digits": report_curve}),
    }
    page = "".join(demo_arms.section([campaign], images))  # type: ignore[arg-type]
    assert demo_arms.scores_line(campaign) in page and "10 of 90 training labels wrong" in page
    assert "governed-learned" in demo_arms.summary_line(campaign)
    assert demo_arms.summary_line({}) == "no final model, nothing retrained"
    assert page.count("<tr>") == 2 and "governed-learned" in page and page.count("<img") == 2
    nothing = {"settings": {"project": "x"}, "governance_arms": {"labels": 0, "skipped": 0}}
    assert "nothing was retrained" in "".join(demo_arms.section([nothing], {}))
    assert demo_arms.arms_plot({"x": {}}) is None and demo_arms.trust_plot({"x": None}) is None
    assert len(build(task.spec).layer_groups()) == 3
