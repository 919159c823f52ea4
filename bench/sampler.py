"""Sampler benchmarks: ranking speed, import-with-dedup throughput, label efficiency.

1. Rank a 1,000,000-item pool (10-class probabilities plus 64-d embeddings) by
   margin and select a diverse (k-center) batch of 1,000.
2. Import `--import-items` text items (5% exact and 5% near duplicates mixed in)
   through `ImportItems` into a sampler process (its own embedded Postgres and
   broker), deduplicating as they come: the rate at which imports are stored and
   acknowledged, and how long until every ItemImported event is on the broker.
3. Label efficiency on scikit-learn's digits: learning curves of each strategy
   against random sampling (mean of seeds), labels needed to reach random's
   final accuracy; the curves go to bench/results/sampler_learning_curves.png.
4. Depth feedback on/off (`--parts feedback`): the product's loop on digits, with
   and without training's depth profiles boosting confused classes; labels needed
   to come within `--feedback-gap` of the accuracy of the whole pool labeled, per
   seed, their median and spread. Written to bench/results/sampler_feedback.json
   (curves: sampler_feedback_curves.png).

Prints the figures and writes bench/results/sampler.json (parts 1-3).

    OMP_NUM_THREADS=1 python bench/sampler.py [--parts rank efficiency import feedback]
        [--feedback-seeds 5] [--feedback-budget 500] [--feedback-step 25] [--feedback-gap 0.01]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import psycopg
import torch
from harness import (
    RESULTS,
    ROOT,
    client_channel,
    embedded_stack,
    gateway_process,
    report,
    service_env,
)
from strata.cli.progress import ProgressBar
from strata.common.channels import with_metadata
from strata.common.embedded import free_port
from strata.models.families import GroupedModel, ModelSpec, build
from strata.sampler.config import SamplerConfig
from strata.sampler.feedback import confusion_weights
from strata.sampler.handout import choose
from strata.sampler.simulate import labels_to_reach, learning_curve
from strata.sampler.store import Candidate
from strata.sampler.strategies import margin, select_batch
from strata.training.analysis import depth_profiles, logits_of
from strata.training.averaging import WeightAverage
from strata.training.config import TrainingConfig
from strata.training.schedule import epochs_for
from strata.training.step import plain_step
from strata.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc


def bench_rank(n: int) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, 10)).astype(np.float32) * 2
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    emb = rng.normal(size=(n, 64)).astype(np.float32)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        chosen = select_batch(margin(probs), emb, 1000)
        times.append(time.perf_counter() - started)
    assert len(set(chosen.tolist())) == 1000
    return {"rank_pool": n, "rank_batch": 1000, "rank_select_seconds": round(min(times), 3)}


def bench_import(n: int) -> dict:  # type: ignore[type-arg]
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(5000)]
    base = [" ".join(rng.choice(vocab) for _ in range(rng.randint(12, 30))) for _ in range(n)]
    texts = []
    for i, text in enumerate(base):
        if i > 100 and i % 20 == 0:
            texts.append(base[rng.randrange(i)].upper())  # exact
        elif i > 100 and i % 20 == 1:
            texts.append(base[rng.randrange(i)] + " " + rng.choice(vocab))  # near
        else:
            texts.append(text)
    with (
        tempfile.TemporaryDirectory() as home,
        embedded_stack(Path(home)) as (pg, kafka),
        gateway_process(pg, kafka) as (gateway, admin),
    ):
        port = free_port()
        env = service_env(
            pg, kafka, "sampler", STRATA_SAMPLER_GRPC_PORT=str(port), STRATA_GATEWAY_ADDRESS=gateway
        )
        proc = subprocess.Popen([sys.executable, "-m", "strata.sampler"], env=env)
        try:
            channel = with_metadata(client_channel(f"127.0.0.1:{port}"), admin)
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = sampler_pb2_grpc.SamplerStub(channel)
            # Requests are built before the clock starts: the figure is the service's.
            chunks = [
                sampler_pb2.ImportItemsRequest(
                    project="bench",
                    rows=[
                        sampler_pb2.ImportRow(
                            line=i + 1, content=common_pb2.ItemContent(text=texts[i])
                        )
                        for i in range(start, min(n, start + 2000))
                    ],
                )
                for start in range(0, n, 2000)
            ]
            bar = ProgressBar("importing", n)

            def requests():  # type: ignore[no-untyped-def]
                for number, chunk in enumerate(chunks):
                    bar.update(number * 2000)
                    yield chunk

            started = time.perf_counter()
            reply = stub.ImportItems(requests(), timeout=3600)
            took = time.perf_counter() - started
            bar.update(n)
            bar.close()
            # The outbox relay gives way to the import; announcements catch up after it.
            with psycopg.connect(pg.dsn) as conn:
                while conn.execute(
                    "SELECT count(*) FROM sampler.outbox WHERE published_at IS NULL"
                ).fetchone() != (0,):
                    time.sleep(0.05)
            announced = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "import_items": n,
        "import_seconds": round(took, 2),
        "import_items_per_s": round(n / took),
        "import_all_announced_seconds": round(announced, 2),
        "import_exact_duplicates": reply.exact_duplicates,
        "import_near_duplicates": reply.near_duplicates,
        "import_injected_duplicates": sum(1 for i in range(101, n) if i % 20 in (0, 1)),
    }


def bench_efficiency(seeds: int) -> dict:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    strategies = ["random", "margin", "entropy", "least_confidence"]
    curves: dict[str, list[list[tuple[int, float]]]] = {s: [] for s in strategies}
    bar = ProgressBar("digits", seeds * len(strategies))
    done = 0
    for seed in range(seeds):
        xp, xt, yp, yt = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
        for s in strategies:
            curves[s].append(
                learning_curve(
                    xp,
                    yp,
                    xt,
                    yt,
                    lambda: LogisticRegression(max_iter=300, C=0.5),
                    s,
                    budget=800,
                    start=50,
                    step=25,
                    seed=seed,
                )
            )
            done += 1
            bar.update(done)
    bar.close()
    mean = {
        s: [(n, float(np.mean([dict(c)[n] for c in cs]))) for n, _ in cs[0]]
        for s, cs in curves.items()
    }
    target = mean["random"][-1][1]
    figures: dict[str, object] = {"digits_random_accuracy_at_800": round(target, 4)}
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, curve in mean.items():
        ax.plot([n for n, _ in curve], [a for _, a in curve], label=s)
        needed = labels_to_reach(curve, target)
        figures[f"digits_labels_to_target_{s}"] = needed
    ax.axhline(target, color="#999999", ls="--", lw=1)
    ax.set_xlabel("human labels")
    ax.set_ylabel("test accuracy (digits, mean of seeds)")
    ax.set_title("Label efficiency: strategies vs random")
    ax.legend()
    out = RESULTS / "sampler_learning_curves.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    figures["digits_curves_png"] = str(out.relative_to(ROOT))
    return figures


FEEDBACK_POOL, FEEDBACK_GOLD = 1000, 200  # digits: the rest (597) is the test split


def _fit(spec: ModelSpec, x: np.ndarray, y: np.ndarray, seed: int) -> GroupedModel:  # type: ignore[type-arg]
    """The training service's recipe at its defaults, every label at full depth:
    AdamW, batches of 64, 30 epochs or 600 steps whichever is more, the published
    weights the moving average of the steps'."""
    config = TrainingConfig()
    torch.manual_seed(seed)
    model = build(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    average = WeightAverage(model, config.average_decay)
    features, targets = torch.from_numpy(x), torch.from_numpy(y)
    n, size = len(y), config.batch_size
    model.train()
    for epoch in range(epochs_for(config.epochs, n, size, config.min_steps)):
        order = torch.from_numpy(np.random.default_rng(seed + epoch).permutation(n))
        for start in range(0, n, size):
            rows = order[start : start + size]
            plain_step(model, optimizer, (features[rows],), targets[rows])
            average.update(model)
    model.load_state_dict(average.published(model.state_dict()))
    model.eval()
    return model


def _accuracy(model: GroupedModel, x: np.ndarray, y: np.ndarray) -> float:  # type: ignore[type-arg]
    predicted = logits_of(model, (torch.from_numpy(x),)).argmax(1).numpy()
    return float((predicted == y).mean())


def feedback_curve(
    x: np.ndarray,  # type: ignore[type-arg]
    y: np.ndarray,  # type: ignore[type-arg]
    pool: np.ndarray,  # type: ignore[type-arg]
    gold: np.ndarray,  # type: ignore[type-arg]
    test: np.ndarray,  # type: ignore[type-arg]
    *,
    feedback: bool,
    budget: int,
    start: int,
    step: int,
    seed: int,
) -> tuple[list[tuple[int, float]], list[float], int]:
    """The product's loop on `pool`: train, score the unlabeled items (margin, the
    model's features as embeddings), hand out `step` items through `handout.choose`
    at the sampler's defaults (rare-class boost, k-center, exploration share), with
    the confused-class boosts from `depth_profiles` on `gold` when `feedback`.
    Returns (labels, test accuracy) per round, the largest boost per round, and how
    many items were handed out for DEPTH_FEEDBACK."""
    sampler = SamplerConfig()
    classes = [str(c) for c in range(10)]
    spec = ModelSpec("mlp", classes, input_dim=x.shape[1])
    rng = random.Random(seed)
    labeled = [int(i) for i in np.random.default_rng(seed).choice(pool, start, replace=False)]
    gold_inputs, gold_y = (torch.from_numpy(x[gold]),), torch.from_numpy(y[gold])
    curve: list[tuple[int, float]] = []
    top_boost: list[float] = []
    depth_reason = 0
    while True:
        model = _fit(spec, x[labeled], y[labeled], seed)
        curve.append((len(labeled), _accuracy(model, x[test], y[test])))
        if len(labeled) >= budget:
            return curve, top_boost, depth_reason
        rest = np.setdiff1d(pool, labeled)
        with torch.no_grad():
            inputs = torch.from_numpy(x[rest])
            probs = torch.softmax(model(inputs), 1).numpy()
            embeddings = model.features(inputs).numpy()
        confused: dict[int, float] = {}
        if feedback:
            profiles = depth_profiles(
                model,
                (torch.from_numpy(x[labeled]),),
                torch.from_numpy(y[labeled]),
                gold_inputs,
                gold_y,
                classes,
                seed=seed,
            )
            weights = confusion_weights(profiles)
            confused = {classes.index(c): w for c, w in weights.items()}
            top_boost.append(max(weights.values(), default=0.0))
        uncertainty = margin(probs)
        candidates = [
            Candidate(str(item), float(u), int(p.argmax()), e.tolist(), None)
            for item, u, p, e in zip(rest, uncertainty, probs, embeddings, strict=True)
        ]
        k = min(step, budget - len(labeled))
        picked = choose(
            candidates,
            rng.sample(candidates, min(k, len(candidates))),
            k,
            cold=False,
            n_classes=len(classes),
            confused=confused,
            rng=rng,
            explore_fraction=sampler.explore_fraction,
            boost_weight=sampler.boost_weight,
        )
        depth_reason += sum(c.reason == common_pb2.ROUTING_REASON_DEPTH_FEEDBACK for c in picked)
        labeled.extend(int(c.item_id) for c in picked)


def _spread(values: list[int | None]) -> dict[str, object]:
    """Median, quartiles (order statistics) and range of labels-to-target over seeds; a
    seed that never got there counts as more than any that did (null when it decides)."""
    v = np.asarray([np.inf if n is None else n for n in values], dtype=float)

    def finite(q: float) -> float | None:
        value = float(np.percentile(v, q, method="nearest"))
        return value if np.isfinite(value) else None

    median = float(np.median(v))
    return {
        "median": median if np.isfinite(median) else None,
        "q25": finite(25),
        "q75": finite(75),
        "min": finite(0),
        "max": finite(100),
        "not_reached": int(np.isinf(v).sum()),
        "per_seed": values,
    }


def bench_feedback(seeds: int, budget: int, step: int, gap: float) -> dict:  # type: ignore[type-arg]
    """Labels to come within `gap` of the whole pool's accuracy, depth feedback off/on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    start = 50
    arms = {"off": False, "on": True}
    needed: dict[str, list[int | None]] = {a: [] for a in arms}
    curves: dict[str, list[list[tuple[int, float]]]] = {a: [] for a in arms}
    targets, top_boost, depth_reason, handed = [], [], 0, 0
    bar = ProgressBar("feedback", seeds * len(arms))
    started = time.perf_counter()
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(y))
        pool = order[:FEEDBACK_POOL]
        gold = order[FEEDBACK_POOL : FEEDBACK_POOL + FEEDBACK_GOLD]
        test = order[FEEDBACK_POOL + FEEDBACK_GOLD :]
        spec = ModelSpec("mlp", [str(c) for c in range(10)], input_dim=64)
        whole = _accuracy(_fit(spec, x[pool], y[pool], seed), x[test], y[test])
        targets.append(whole - gap)
        for number, (arm, on) in enumerate(arms.items()):
            curve, boosts, reasons = feedback_curve(
                x,
                y,
                pool,
                gold,
                test,
                feedback=on,
                budget=budget,
                start=start,
                step=step,
                seed=seed,
            )
            curves[arm].append(curve)
            needed[arm].append(labels_to_reach(curve, targets[-1]))
            if on:
                top_boost.append(boosts)
                depth_reason += reasons
                handed += budget - start
            bar.update(seed * len(arms) + number + 1)
    bar.close()
    grid = [n for n, _ in curves["off"][0]]
    mean = {
        a: [float(np.mean([c[i][1] for c in cs])) for i in range(len(grid))]
        for a, cs in curves.items()
    }
    saved = [
        (off - on) if off is not None and on is not None else None
        for off, on in zip(needed["off"], needed["on"], strict=True)
    ]
    boost_by_round = np.mean(np.asarray(top_boost), axis=0)
    figures: dict[str, object] = {
        "feedback_task": (
            f"digits, MLP (the training service's defaults), pool {FEEDBACK_POOL}, gold "
            f"{FEEDBACK_GOLD} (depth profiles), test {len(y) - FEEDBACK_POOL - FEEDBACK_GOLD}; "
            f"{start} random labels, then {step} a round by the sampler's hand-out"
        ),
        "feedback_seeds": seeds,
        "feedback_budget": budget,
        "feedback_target": f"whole pool's test accuracy - {gap}",
        "feedback_targets": [round(t, 4) for t in targets],
        "feedback_labels_to_target_off": _spread(needed["off"]),
        "feedback_labels_to_target_on": _spread(needed["on"]),
        "feedback_labels_saved_per_seed": saved,
        "feedback_accuracy_off": {n: round(a, 4) for n, a in zip(grid, mean["off"], strict=True)},
        "feedback_accuracy_on": {n: round(a, 4) for n, a in zip(grid, mean["on"], strict=True)},
        "feedback_largest_boost_by_round": [round(float(b), 3) for b in boost_by_round],
        "feedback_depth_reason_share": round(depth_reason / max(handed, 1), 3),
        "feedback_seconds": round(time.perf_counter() - started, 1),
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, accuracy in mean.items():
        ax.plot(grid, accuracy, label=f"depth feedback {arm}")
    ax.axhline(float(np.mean(targets)), color="#999999", ls="--", lw=1, label="target (mean)")
    ax.set_xlabel("human labels")
    ax.set_ylabel(f"test accuracy (digits, mean of {seeds} seeds)")
    ax.set_title("Depth-profile feedback in the hand-out")
    ax.legend()
    out = RESULTS / "sampler_feedback_curves.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    figures["feedback_curves_png"] = str(out.relative_to(ROOT))
    return figures


PARTS = ("rank", "efficiency", "import", "feedback")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--import-items", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--feedback-seeds", type=int, default=5)
    parser.add_argument("--feedback-budget", type=int, default=500)
    parser.add_argument("--feedback-step", type=int, default=25)
    parser.add_argument("--feedback-gap", type=float, default=0.01)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures: dict[str, object] = {}
    if "rank" in args.parts:
        figures.update(bench_rank(args.pool))
    if "efficiency" in args.parts:
        figures.update(bench_efficiency(args.seeds))
    if "import" in args.parts:
        figures.update(bench_import(args.import_items))
    if figures:
        report("sampler", figures)
    if "feedback" in args.parts:
        report(
            "sampler_feedback",
            bench_feedback(
                args.feedback_seeds, args.feedback_budget, args.feedback_step, args.feedback_gap
            ),
        )


if __name__ == "__main__":
    main()
