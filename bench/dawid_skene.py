"""Dawid-Skene aggregation speed: 1M labels (100k items, 10 classes, 200 annotators).

Times `strata.quality.aggregation.dawid_skene` to convergence (no posterior
moves by more than 1e-5) and crowd-kit's DawidSkene on the same votes, both
with crowd-kit's own stopping rule (loss change under 1e-5) and with the same
number of EM iterations as ours, and compares accuracy against the known truth.
Prints the figures and writes bench/results/dawid_skene.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from strata.quality.aggregation import dawid_skene, majority_vote

RESULTS = Path(__file__).parent / "results" / "dawid_skene.json"


def crowd(n_items: int, n_classes: int, n_annotators: int, overlap: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """Votes from annotators of mixed skill (including spammers), vectorised."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    skill = rng.choice([0.9, 0.75, 0.6, 0.0], n_annotators, p=[0.25, 0.4, 0.25, 0.1])
    item = np.repeat(np.arange(n_items), overlap)
    # Distinct annotators per item: a random offset walk over a random permutation.
    start = rng.integers(0, n_annotators, n_items)
    step = rng.integers(1, n_annotators // overlap, n_items)
    annotator = (start[:, None] + step[:, None] * np.arange(overlap)) % n_annotators
    annotator = annotator.ravel()
    right = rng.random(item.size) < skill[annotator]
    label = np.where(right, truth[item], rng.integers(0, n_classes, item.size))
    return truth, item, annotator, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--annotators", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=10)
    parser.add_argument("--skip-crowd-kit", action="store_true")
    args = parser.parse_args()

    truth, item, annotator, label = crowd(args.items, args.classes, args.annotators, args.overlap)
    print(
        f"{item.size:,} labels, {args.items:,} items, {args.classes} classes, "
        f"{args.annotators} annotators"
    )
    t = time.perf_counter()
    ours = dawid_skene(item, annotator, label, args.classes, n_items=args.items)
    ours_s = time.perf_counter() - t
    mv, _ = majority_vote(item, label, args.classes, n_items=args.items)
    figures: dict[str, object] = {
        "labels": int(item.size),
        "items": args.items,
        "classes": args.classes,
        "annotators": args.annotators,
        "strata_seconds": round(ours_s, 2),
        "strata_iterations": ours.iterations,
        "strata_seconds_per_iteration": round(ours_s / ours.iterations, 3),
        "strata_accuracy": round(float((ours.posteriors.argmax(1) == truth).mean()), 4),
        "majority_vote_accuracy": round(float((mv == truth).mean()), 4),
    }
    print(f"strata: {ours_s:.2f}s, {ours.iterations} iterations")
    if not args.skip_crowd_kit:
        from crowdkit.aggregation import DawidSkene

        warnings.filterwarnings("ignore")
        df = pd.DataFrame({"task": item, "worker": annotator, "label": label})
        print("crowd-kit DawidSkene (defaults: at most 100 iterations) ...", flush=True)
        t = time.perf_counter()
        ref = DawidSkene().fit(df)
        ck_s = time.perf_counter() - t
        probas = ref.probas_.reindex(columns=range(args.classes)).fillna(0).sort_index()
        # The same number of EM iterations as ours: the cost of the same work.
        t = time.perf_counter()
        DawidSkene(n_iter=ours.iterations, tol=0).fit(df)
        ck_same_s = time.perf_counter() - t
        figures.update(
            crowd_kit_seconds=round(ck_s, 2),
            crowd_kit_iterations=len(getattr(ref, "loss_history_", [])) or None,
            crowd_kit_accuracy=round(float((probas.to_numpy().argmax(1) == truth).mean()), 4),
            crowd_kit_seconds_same_iterations=round(ck_same_s, 2),
            speedup_same_iterations=round(ck_same_s / ours_s, 1),
            wall_time_ratio_strata_to_crowd_kit=round(ours_s / ck_s, 2),
        )
    figures["machine"] = f"{platform.machine()} {os.cpu_count()} cores"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<36}{value}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
