"""Datasets in and out through `strata` as a user runs it, against the whole stack:
a Label Studio round trip, a crowd's answers reproducing their consensus, bad files."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crowdkit.aggregation import DawidSkene
from strata.quality.aggregation import dawid_skene
from strata.quality.config import QualityConfig

from .support import env_for, run_strata, running_stack

CLASSES = ("cat", "dog", "bird")
THRESHOLD = 0.9


def contract(project: str) -> str:
    return (
        f"project: {project}\nversion: 'v1'\nclasses: [{', '.join(CLASSES)}]\n"
        "overlap: {min: 3, max: 5}\n"
        f"consensus_threshold: {THRESHOLD}\n"
        "gold: {rate: 0.0, accuracy_threshold: 0.8}\n"
    )


def sentences(rng: random.Random, n: int) -> list[str]:
    """Texts far enough apart that none is a near duplicate of another."""
    return [" ".join(f"w{rng.randrange(5000)}" for _ in range(12)) for _ in range(n)]


def studio_tasks(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """A Label Studio export: every task answered by four people, at most one wrong."""
    tasks = []
    for task_id, text in enumerate(sentences(rng, n), start=101):
        truth = rng.choice(CLASSES)
        wrong = rng.randrange(5)  # which of the four is wrong (4: nobody)
        tasks.append(
            {
                "id": task_id,
                "data": {"text": text, "source": "forum"},
                "annotations": [
                    {
                        "completed_by": person,
                        "lead_time": 3.25,
                        "result": [
                            {
                                "from_name": "label",
                                "to_name": "text",
                                "type": "choices",
                                "value": {
                                    "choices": [
                                        rng.choice([c for c in CLASSES if c != truth])
                                        if k == wrong
                                        else truth
                                    ]
                                },
                            }
                        ],
                    }
                    for k, person in enumerate(rng.sample(range(1, 7), 4))
                ],
            }
        )
    return tasks


def consensus_of(studio: list[dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """external id -> (value, score) from a Strata Label Studio export."""
    out = {}
    for task in studio:
        (decided,) = [a for a in task["annotations"] if a["meta"]["kind"] == "consensus"]
        value = decided["result"][0]["value"]["choices"][0]
        out[task["data"]["external_id"]] = (value, decided["meta"]["consensus_score"])
    return out


def assert_label_studio_format(studio: list[dict[str, Any]]) -> None:
    """Label Studio's documented task format (data; annotations of choices results)."""
    for task in studio:
        assert isinstance(task["data"], dict) and task["data"]["text"]
        for annotation in task["annotations"]:
            for result in annotation["result"]:
                assert {"from_name", "to_name", "type", "value"} <= set(result)
                assert result["type"] == "choices" and len(result["value"]["choices"]) == 1
            assert annotation["lead_time"] is None or annotation["lead_time"] >= 0


def imported_counts(out: str) -> tuple[int, int]:
    """(answers imported, items accepted) from `strata import annotations` output."""
    found = re.search(r"(\d+) answers imported .* (\d+) accepted", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def test_datasets_leave_and_come_back_whole(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    rng = random.Random(27)
    trip, back, crowd, bad = (f"{name}-{rng.randrange(10**6)}" for name in "abcd")
    for project in (trip, back, crowd, bad):
        (tmp_path / f"{project}.yaml").write_text(contract(project))

    with running_stack(tmp_path, env):

        def strata(*args: str, ok: tuple[int, ...] = (0,), timeout_s: float = 300) -> str:
            done = run_strata(tmp_path, env, *args, timeout_s=timeout_s)
            assert done.returncode in ok, done.stdout + done.stderr
            return done.stdout

        strata("contract", "load", *(f"{p}.yaml" for p in (trip, back, crowd, bad)))

        # -- A Label Studio project comes in (tasks, then annotations) and goes out.
        (tmp_path / "studio.json").write_text(json.dumps(studio_tasks(rng, 40), indent=2))
        assert "40 imported" in strata("import", "studio.json", "--project", trip)
        answers, accepted = imported_counts(
            strata("import", "annotations", "studio.json", "--project", trip)
        )
        assert (answers, accepted) == (160, 40)
        strata("export", "--project", trip, "--format", "label-studio", "--output", "trip.json")
        first = json.loads((tmp_path / "trip.json").read_text())
        assert_label_studio_format(first)
        assert {t["data"]["external_id"] for t in first} == {str(i) for i in range(101, 141)}
        assert all(t["data"]["metadata"] == {"source": "forum"} for t in first)
        # ... into a fresh project: its export's items and votes, and the same consensus.
        assert "40 imported" in strata("import", "trip.json", "--project", back)
        assert imported_counts(strata("import", "annotations", "trip.json", "--project", back)) == (
            160,
            40,
        )
        strata("export", "--project", back, "--format", "label-studio", "--output", "back.json")
        again = json.loads((tmp_path / "back.json").read_text())
        # The same consensus: the same value for every item, the same score (up to the
        # order floating-point sums are taken in).
        before, after = consensus_of(first), consensus_of(again)
        assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
        assert {k: v[1] for k, v in after.items()} == pytest.approx(
            {k: v[1] for k, v in before.items()}, abs=1e-12
        )
        # Importing an import again changes nothing.
        rerun = strata("import", "annotations", "trip.json", "--project", back)
        assert "0 answers imported" in rerun and "160 imported before" in rerun

        # -- Bad lines are named and stored nowhere; the good ones go in.
        (tmp_path / "few.jsonl").write_text(
            "".join(
                json.dumps({"id": f"b{i}", "text": t}) + "\n"
                for i, t in enumerate(sentences(rng, 3))
            )
        )
        assert "3 imported" in strata("import", "few.jsonl", "--project", bad)
        (tmp_path / "bad.csv").write_text(
            "item,annotator,value\nb0,ann,cat\nb9,ann,cat\nb1,ann,cow\nb2,ann\nb2,ann,dog,extra\n"
        )
        for _ in range(2):
            out = strata("import", "annotations", "bad.csv", "--project", bad, ok=(3,))
            assert "line 3: no item with external id 'b9'" in out
            assert "line 4: 'cow' is not a class of the contract" in out
            assert "line 5: expected 3 fields" in out and "line 6: expected 3 fields" in out
        assert "0 answers imported" in out and "1 imported before, 4 rejected" in out

        # -- A crowd's 20k answers from 150 people reproduce Dawid-Skene's consensus.
        items = [f"c{i}" for i in range(4000)]
        with (tmp_path / "items.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "text"])
            writer.writerows(zip(items, sentences(rng, len(items)), strict=True))
        assert "4000 imported" in strata("import", "items.csv", "--project", crowd)
        skill = {f"p{a}": rng.uniform(0.5, 0.95) for a in range(150)}
        people = sorted(skill)
        votes = []
        for item in items:
            truth = rng.choices(CLASSES, weights=(0.5, 0.3, 0.2))[0]
            for person in rng.sample(people, 5):
                right = rng.random() < skill[person]
                votes.append(
                    (
                        item,
                        person,
                        truth if right else rng.choice([c for c in CLASSES if c != truth]),
                    )
                )
        with (tmp_path / "crowd.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["item", "annotator", "value"])
            writer.writerows(votes)
        answers, accepted = imported_counts(
            strata("import", "annotations", "crowd.csv", "--project", crowd, timeout_s=600)
        )
        assert answers == 20_000
        strata("export", "--project", crowd, "--output", "crowd.jsonl", timeout_s=300)
        rows = [json.loads(line) for line in (tmp_path / "crowd.jsonl").read_text().splitlines()]

    # The pure Dawid-Skene quality runs (with its default priors) on the same answers.
    settings = QualityConfig()
    item_idx = {item: n for n, item in enumerate(items)}
    person_idx = {p: n for n, p in enumerate(people)}
    result = dawid_skene(
        np.array([item_idx[v[0]] for v in votes]),
        np.array([person_idx[v[1]] for v in votes]),
        np.array([CLASSES.index(v[2]) for v in votes]),
        len(CLASSES),
        n_items=len(items),
        n_annotators=len(people),
        prior_strength=settings.prior_strength,
        prior_accuracy=settings.prior_accuracy,
    )
    best = result.posteriors.max(axis=1)
    expected = {items[n] for n in np.flatnonzero(best >= THRESHOLD)}
    near = {items[n] for n in np.flatnonzero(abs(best - THRESHOLD) < 1e-6)}
    got = {r["external_id"]: r for r in rows}
    assert len(rows) == accepted, "the export holds every decided item"
    assert set(got) ^ expected <= near
    for external_id, row in got.items():
        n = item_idx[external_id]
        assert row["value"] == CLASSES[int(result.posteriors[n].argmax())]
        assert abs(row["consensus_score"] - best[n]) < 1e-6
        assert {v["annotator_id"] for v in row["votes"]} == {
            f"ext:{v[1]}" for v in votes[5 * n : 5 * n + 5]
        }
    # And crowd-kit's Dawid-Skene, an independent implementation without priors,
    # picks the same class for almost all of them.
    import pandas as pd

    kit = DawidSkene(n_iter=100).fit_predict(
        pd.DataFrame(votes, columns=["task", "worker", "label"])
    )
    same = np.mean([kit[e] == row["value"] for e, row in got.items()])
    print(f"crowd: {len(rows)} of 4000 accepted; crowd-kit agrees on {same:.1%}")
    assert same >= 0.98
