"""Governed learning against what a skeptical user does instead with the same scores.

Every training label has a consensus value (what went to training) and a consensus
score in [0, 1], both from simulated annotators' votes aggregated by the product's
Dawid-Skene (`strata.quality.aggregation.dawid_skene`, quality's default priors):
the value is the item's most probable class, the score its posterior. Each arm
trains the same model (same initialisation, AdamW at the service's default learning
rate, `--steps` steps of batch 64, the same batch order per seed) on those labels
and is measured on a clean test split:

- ungoverned: every label at full depth (plain cross-entropy, `plain_step`);
- drop: labels scoring under DROP_BELOW (0.7) are left out, the rest at full depth
  (batches of 64 drawn in the same order from the labels kept);
- weighted: each label's loss times its score (summed, over the batch size);
- governed-rules: `default_governance()`'s rules (score >= 0.9: every layer group,
  >= 0.7: two, else the head only) through `governed_step`;
- governed-learned: the learned policy (`strata.training.governance`, the default):
  the trust curve (`strata.common.trust.fit`) is fitted on a gold sample, a random
  GOLD_SHARE (10%, the contract's usual gold rate) of the training items whose truth
  the simulation knows, as quality fits it on gold items' consensus; each label's
  depth and per-group scale from its trust, through `governed_step`.

An arm is one entry of ARMS: a function from the labels to a `Treatment` (which
labels train, how deep each one's gradient reaches, how much it weighs).

Noise regimes (per training item: the value, its score, whether it is right):

- low-consensus-noise: six careful annotators (accuracy 0.95-0.86, mistakes mostly
  on the class's look-alike) and three weak ones (accuracy 0.3, mistakes anywhere);
  half the items (a cheap vendor's batch) get three weak votes, the rest two careful
  and one weak vote, so Dawid-Skene learns who the weak ones are: wrong labels are
  mostly the low-scored ones;
- even-noise: the same votes and scores, but the wrong labels are a random share
  (that of low-consensus-noise for the same seed) flipped to another class,
  whatever their score;
- clean: the same scores, every label right (what caution costs);
- colluding: six careful annotators and a ring of three (careful otherwise) who
  take a fifth of the items between them and all give the item's look-alike class:
  wrong labels with high consensus;
- spammers: the demo's crowd (`strata.demo.crowd.digits_crowd`, its reviewers
  aside) with three more spammers like its own (`spammer`: mostly one favourite
  class, at 0.5 s a label), tasks going to annotators in proportion to their speed,
  two votes an item and up to four while the score is under the demo's consensus
  threshold (0.9); no gold, so nobody is blocked.

Families: the digits MLP (scikit-learn's digits, 64 features /16, 1,200 training
items, the other 597 for the test) and text-hash (8,192 hash buckets) on a generated
10-topic task (sentences of Zipf-distributed shared words, nearly half of them topic
words, a topic sharing words with its look-alike; 1,500 training and 1,000 test
sentences per seed; about 0.7 clean accuracy at 400 steps).

Reported per (family, regime, arm): mean test accuracy over the seeds, its 95%
t-interval, the per-seed values; for governed arms, the paired difference from the
best other arm (by mean). Writes bench/results/governance.json (`--out`) and a plot
beside it (.png): one panel per family, regimes on x, arms as bars with the
intervals as whiskers. The default run takes about 10-20 minutes on 2 cores.

    OMP_NUM_THREADS=1 python bench/governance.py [--seeds 5] [--steps 400]
        [--families mlp text-hash] [--regimes ...] [--arms ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from governance_regimes import LOOKALIKE, REGIMES, K, describe
from harness import RESULTS
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from strata.cli.progress import ProgressBar
from strata.common import trust
from strata.demo.arms import draw_arms
from strata.gateway.contract import default_governance
from strata.models.families import ModelSpec, build, text_tokens
from strata.quality.config import QualityConfig
from strata.training.arms import (
    ARMS,
    DROP_BELOW,
    Arm,
    Scored,
    Task,
    summarise,
    train,
)
from strata.training.governance import SOURCE_NAMES
from strata.training.schedule import Schedule

Ints = NDArray[np.int64]

SCHEDULE = Schedule(steps=400)  # batch 64, AdamW at the service's default learning rate
GOLD_SHARE = 0.1
DIGITS_TRAIN = 1200
TEXT_TRAIN, TEXT_TEST = 1500, 1000


# -- tasks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A family's task for one seed: the model and its test data, and the training
    items' true classes."""

    task: Task
    train_y: Ints


def digits_task(seed: int) -> Family:
    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[:DIGITS_TRAIN], order[DIGITS_TRAIN:]
    features = torch.from_numpy(x[train])
    task = Task(
        ModelSpec("mlp", [str(d) for d in range(K)], input_dim=64),
        lambda rows: (features[torch.from_numpy(rows)],),
        (torch.from_numpy(x[test]),),
        torch.from_numpy(y[test]),
    )
    return Family(task, y[train])


TOPICAL, OWN = 0.45, 0.75
TEXT_BUCKETS = 1 << 13  # the spec's default is 1 << 15: AdamW's dense update of it is slow


def text_corpus(n: int, seed: int) -> tuple[list[str], Ints]:
    """`n` sentences of 6-16 words and their topics. Every word is one of 3,000 shared
    words (Zipf-distributed) except, with probability TOPICAL, a topic word: one of 25
    of the topic's own (OWN) or else of its look-alike's. The language is the same for
    every seed; the sentences are not."""
    language = np.random.default_rng(1234)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < 3000 + K * 25:
        picks = language.integers(0, len(syllables), int(language.integers(2, 4)))
        word = "".join(syllables[p] for p in picks)
        if word not in seen:
            seen.add(word)
            words.append(word)
    shared, topical = words[:3000], np.array(words[3000:]).reshape(K, 25)
    zipf = 1.0 / np.arange(1, 3001) ** 1.1
    zipf /= zipf.sum()
    rng = np.random.default_rng((seed, 5))
    topics = rng.integers(0, K, n).astype(np.int64)
    sentences = []
    for topic in topics.tolist():
        length = int(rng.integers(6, 17))
        out = [shared[i] for i in rng.choice(3000, length, p=zipf)]
        for at in np.flatnonzero(rng.random(length) < TOPICAL).tolist():
            source = topic if rng.random() < OWN else int(LOOKALIKE[topic])
            out[at] = str(topical[source, rng.integers(0, 25)])
        sentences.append(" ".join(out))
    return sentences, topics


def _text_inputs(tokens: list[Ints]) -> tuple[torch.Tensor, ...]:
    """The inputs `featurize` makes of these texts' tokens (bag, offsets, 1/sqrt(len))."""
    lengths = np.array([len(t) for t in tokens])
    offsets = np.concatenate([[0], np.cumsum(lengths[:-1])]).astype(np.int64)
    weights = np.repeat(1.0 / np.sqrt(lengths), lengths).astype(np.float32)
    return (
        torch.from_numpy(np.concatenate(tokens)),
        torch.from_numpy(offsets),
        torch.from_numpy(weights),
    )


def text_task(seed: int) -> Family:
    spec = ModelSpec("text-hash", [f"topic-{c}" for c in range(K)], buckets=TEXT_BUCKETS)
    texts, topics = text_corpus(TEXT_TRAIN + TEXT_TEST, seed)
    tokens = [np.asarray(text_tokens(t, spec.buckets), dtype=np.int64) for t in texts]
    train = tokens[:TEXT_TRAIN]
    task = Task(
        spec,
        lambda rows: _text_inputs([train[i] for i in rows.tolist()]),
        _text_inputs(tokens[TEXT_TRAIN:]),
        torch.from_numpy(topics[TEXT_TRAIN:]),
    )
    return Family(task, topics[:TEXT_TRAIN])


FAMILIES: dict[str, Callable[[int], Family]] = {"mlp": digits_task, "text-hash": text_task}


# -- statistics, report ------------------------------------------------------------------------


def _cell(summary: dict[str, Any]) -> str:
    ci = summary["ci95"]
    half = f"±{(ci[1] - ci[0]) / 2:.3f}" if ci else ""
    return f"{summary['mean']:.3f}{half}"


def table(results: dict[str, Any], regimes: dict[str, Any], arms: list[Arm]) -> str:
    lines = [
        "family     regime               wrong  scored <0.7  of wrong: <0.7  of <0.7: wrong",
    ]
    for family, by_regime in regimes.items():
        for regime, d in by_regime.items():
            lines.append(
                f"{family:<11}{regime:<21}{d['wrong_share']:>5.3f}{d['under_0.7_share']:>13.3f}"
                f"{d['wrong_labels_under_0.7_share']:>16.3f}{d['wrong_among_under_0.7']:>16.3f}"
            )
    governed = [a.name for a in arms if a.governed]
    header = f"\n{'family':<11}{'regime':<21}" + "".join(f"{a.name:>16}" for a in arms)
    lines.append(header + "".join(f"{'delta ' + g:>28}" for g in governed))
    for family, by_regime in results.items():
        for regime, by_arm in by_regime.items():
            row = f"{family:<11}{regime:<21}" + "".join(
                f"{_cell(by_arm[a.name]):>16}" for a in arms
            )
            for g in governed:
                d = by_arm[g].get("delta_vs_best_other")
                row += f"{(_cell(d) + ' vs ' + d['other']) if d else '-':>28}"
            lines.append(row)
    lines.append(
        "accuracy: mean over seeds ± half the 95% t-interval; delta: paired, vs best other"
    )
    return "\n".join(lines)


def plot(results: dict[str, Any], arms: list[Arm], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(results)
    fig, axes = plt.subplots(1, len(families), figsize=(7 * len(families), 4.5), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        regimes = list(results[family])
        draw_arms(ax, [results[family][r] for r in regimes], [a.name for a in arms])
        ax.set_xticks(np.arange(len(regimes)), regimes, rotation=20, ha="right")
        ax.set_title(family)
        ax.set_ylabel("test accuracy (mean of seeds, 95% t-interval)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Governed learning vs what a skeptical user does with the same scores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=SCHEDULE.steps, help="optimizer steps per run")
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--regimes", nargs="+", choices=list(REGIMES), default=list(REGIMES))
    names = [a.name for a in ARMS]
    parser.add_argument("--arms", nargs="+", choices=names, default=names)
    parser.add_argument("--out", type=Path, default=RESULTS / "governance.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    schedule = Schedule(steps=args.steps)
    arms = [a for a in ARMS if a.name in args.arms]
    began = time.perf_counter()
    per_seed: dict[str, dict[str, dict[str, list[float]]]] = {}
    regimes: dict[str, dict[str, Any]] = {}
    bar = ProgressBar("runs", len(args.families) * args.seeds * len(args.regimes) * len(arms))
    done = 0
    for family in args.families:
        per_seed[family] = {r: {a.name: [] for a in arms} for r in args.regimes}
        shares: dict[str, list[dict[str, float]]] = {r: [] for r in args.regimes}
        for seed in range(args.seeds):
            made = FAMILIES[family](seed)
            task, train_y = made.task, made.train_y
            n_groups = len(build(task.spec).layer_groups())
            for regime in args.regimes:
                labels = REGIMES[regime](train_y, seed)
                shares[regime].append(describe(labels, train_y))
                gold = np.random.default_rng((seed, 7)).random(len(labels.value)) < GOLD_SHARE
                curve = trust.fit(labels.score[gold], labels.value[gold] == train_y[gold])
                scored = Scored(labels.score, K, n_groups, curve, default_governance())
                for arm in arms:
                    accuracy = train(task, labels.value, arm.treat(scored), seed, schedule)
                    per_seed[family][regime][arm.name].append(accuracy)
                    done += 1
                    bar.update(done)
        regimes[family] = {
            r: {key: round(float(np.mean([s[key] for s in seeds])), 4) for key in seeds[0]}
            | {"per_seed": seeds}
            for r, seeds in shares.items()
        }
    bar.close()
    results = {
        family: {r: summarise(by_arm, arms) for r, by_arm in by_regime.items()}
        for family, by_regime in per_seed.items()
    }
    policy = default_governance()
    figures: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "settings": {
            "seeds": list(range(args.seeds)),
            "steps": args.steps,
            "batch": schedule.batch,
            "optimizer": f"AdamW lr={schedule.lr}",
            "torch_threads": torch.get_num_threads(),
            "drop_below": DROP_BELOW,
            "gold_share_for_the_trust_curve": GOLD_SHARE,
            "governance": [
                {"min_consensus_score": round(r.min_consensus_score, 4), "depth": r.influence_depth}
                | ({"source": SOURCE_NAMES[r.source]} if r.source else {})
                for r in policy.rules
            ],
            "dawid_skene_priors": {
                "strength": QualityConfig().prior_strength,
                "accuracy": QualityConfig().prior_accuracy,
            },
            "train_items": {"mlp": DIGITS_TRAIN, "text-hash": TEXT_TRAIN},
            "test_items": {"mlp": 1797 - DIGITS_TRAIN, "text-hash": TEXT_TEST},
        },
        "regimes": regimes,
        "results": results,
        "seconds": round(time.perf_counter() - began, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    plot(results, arms, args.out.with_suffix(".png"))
    print(table(results, regimes, arms))
    print(f"{figures['seconds']} s; written to {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
