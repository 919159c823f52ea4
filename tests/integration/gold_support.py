"""Serving gold and pool tasks to a crowd and comparing them (the gold side-channel test and
its benchmark share it)."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import stats
from strata.common.predictions import prediction_events
from strata.v1 import common_pb2, gateway_pb2

from .conftest import produce, wait_until
from .gateway_support import Gateway, ScriptedSampler, contract_doc, gold_events

ALPHA = 0.01
CLASSES = ["cat", "dog", "bird"]
POOL, GOLD, TASKS, WORKERS = 700, 250, 600, 4
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def prediction(project: str, item_id: str, confidence: float, value: str) -> Any:
    rest = (1.0 - confidence) / (len(CLASSES) - 1)
    probabilities = [confidence if c == value else rest for c in CLASSES]
    p = common_pb2.Prediction(
        item_id=item_id,
        project=project,
        model_version="m1",
        classes=CLASSES,
        probabilities=probabilities,
        predicted_class=value,
        confidence=confidence,
        calibrated=True,
    )
    p.predicted_at.FromDatetime(datetime.now(UTC))
    return prediction_events(common_pb2.RoutingMetadata(), [p])[0]


def measure(gw: Gateway, source: ScriptedSampler, bootstrap: str, seed: int) -> dict:  # type: ignore[type-arg]
    """Serve 600 tasks of a fresh project to a crowd; the figures and p-values."""
    rng = random.Random(seed)
    project = f"g{uuid.uuid4().hex[:8]}"
    gw.load_contract(
        contract_doc(
            project,
            overlap="{min: 1, max: 1}",
            gold="{rate: 0.2, honeypot_rate: 0.25}",
            lease_seconds="300",
        )
    )
    pool = [(f"{project}-{i}", f"pool text {i}") for i in range(POOL)]
    # The pool people see: 80% scored, unsure (auto-accept took the confident ones), plus
    # a few spot checks drawn from above the auto-accept threshold.
    events = []
    for item_id, _ in pool:
        if rng.random() < 0.8:
            confident = rng.random() < 0.08
            confidence = rng.uniform(0.96, 0.995) if confident else rng.uniform(0.4, 0.9)
            events.append(prediction(project, item_id, confidence, rng.choice(CLASSES)))
    # Gold: a random sample, on which the model is sure and right.
    gold = gold_events(project, GOLD, "cat")
    naive = [rng.uniform(0.96, 0.999) for _ in range(GOLD)]
    events += [
        prediction(project, e.key.decode(), c, "cat")
        for e, c in zip(gold, naive, strict=True)  # type: ignore[union-attr]
    ]
    produce(bootstrap, [*gold, *events])

    def loaded() -> bool:
        with gw.runtime.db.transaction() as conn:
            g = conn.execute(
                "SELECT count(*) FROM units WHERE project = %s AND kind = 'gold'", (project,)
            ).fetchone()[0]
            p = conn.execute(
                "SELECT count(*) FROM prelabels WHERE item_id LIKE %s", (f"{project}-%",)
            ).fetchone()[0]
        return g == GOLD and p == len(events)

    wait_until(loaded, 60, "gold and predictions to reach the gateway")
    source.add(project, pool)
    crowd = [gw.annotator(f"w{i}-{project}", project=project) for i in range(WORKERS)]
    served: list[dict[str, object]] = []
    lock = threading.Lock()

    def work(md) -> None:  # type: ignore[no-untyped-def]
        while True:
            with lock:
                if len(served) >= TASKS:
                    return
            started = time.perf_counter()
            reply = gw.stub.NextTask(gateway_pb2.NextTaskRequest(project=project), metadata=md)
            took = time.perf_counter() - started
            if not reply.HasField("task"):
                time.sleep(0.05)
                continue
            task = reply.task
            received = time.time()
            with lock:
                served.append(
                    {
                        "gold": "-gold-" in task.item_id,
                        "prelabel": task.HasField("prelabel"),
                        "confidence": task.prelabel.confidence,
                        "value": task.prelabel.value,
                        "task_id": task.task_id,
                        "lease_s": task.lease_expires_at.ToNanoseconds() / 1e9 - received,
                        "serve_s": took,
                        "keys": sorted(f.name for f, _ in task.ListFields()),
                    }
                )
            gw.stub.SubmitLabel(
                gateway_pb2.SubmitLabelRequest(task_id=task.task_id, value="cat", duration_ms=1000),
                metadata=md,
            )

    threads = [threading.Thread(target=work, args=(md,)) for md in crowd]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    g = [s for s in served if s["gold"]]
    p = [s for s in served if not s["gold"]]
    assert len(served) >= 500 and len(g) >= 60, (len(served), len(g))

    def share(rows: list[dict[str, object]]) -> list[int]:
        shown = sum(1 for r in rows if r["prelabel"])
        return [shown, len(rows) - shown]

    figures: dict[str, object] = {"tasks": len(served), "gold": len(g), "pool": len(p)}
    # Pre-label presence: a 2x2 chi-square.
    chi2, p_presence, _, _ = stats.chi2_contingency([share(g), share(p)])
    figures["presence"] = {
        "gold": share(g)[0] / len(g),
        "pool": share(p)[0] / len(p),
        "chi2": chi2,
        "p": p_presence,
    }
    # Confidence of the pre-labels shown: two-sample KS.
    gc = [float(r["confidence"]) for r in g if r["prelabel"]]  # type: ignore[arg-type]
    pc = [float(r["confidence"]) for r in p if r["prelabel"]]  # type: ignore[arg-type]
    ks_conf = stats.ks_2samp(gc, pc)
    confident = [r for r in served if r["prelabel"] and float(r["confidence"]) >= 0.95]  # type: ignore[arg-type]
    figures["confidence"] = {
        "ks": ks_conf.statistic,
        "p": ks_conf.pvalue,
        "gold_share_overall": len(g) / len(served),
        "gold_share_among_confident": (
            sum(1 for r in confident if r["gold"]) / len(confident) if confident else None
        ),
        "confident_tasks": len(confident),
        # Had gold shown the model's own (confident) predictions:
        "naive_gold_share_among_confident": len(g)
        / (len(g) + sum(1 for r in confident if not r["gold"])),
    }
    # Id format: every id a random UUID; the first hex digit spread alike.
    assert all(UUID4.match(str(r["task_id"])) for r in served)
    digits = [[0] * 16 for _ in range(2)]
    for i, rows in enumerate((g, p)):
        for r in rows:
            digits[i][int(str(r["task_id"])[0], 16)] += 1
    chi2_ids, p_ids, _, _ = stats.chi2_contingency(digits)
    figures["id_format"] = {"chi2": chi2_ids, "p": p_ids}
    # Lease length and time to serve: two-sample KS.
    ks_lease = stats.ks_2samp([r["lease_s"] for r in g], [r["lease_s"] for r in p])
    ks_serve = stats.ks_2samp([r["serve_s"] for r in g], [r["serve_s"] for r in p])
    figures["lease_length"] = {"ks": ks_lease.statistic, "p": ks_lease.pvalue}
    figures["time_to_serve"] = {
        "ks": ks_serve.statistic,
        "p": ks_serve.pvalue,
        "median_ms_gold": 1000 * float(np.median([r["serve_s"] for r in g])),
        "median_ms_pool": 1000 * float(np.median([r["serve_s"] for r in p])),
    }
    # The same message shape: the same fields set (a pre-label or not, as above).
    assert {tuple(r["keys"]) for r in g} <= {tuple(r["keys"]) for r in p}  # type: ignore[arg-type]
    # Honeypots: some gold pre-labels are wrong on purpose, always plausible classes.
    wrong = [r for r in g if r["prelabel"] and r["value"] != "cat"]
    figures["gold_wrong_prelabels"] = len(wrong)
    # Power: the same KS test finds gold at once from the pre-labels a naive gateway shows.
    ks_naive = stats.ks_2samp(naive, pc)
    figures["naive_confidence"] = {"ks": ks_naive.statistic, "p": ks_naive.pvalue}
    assert ks_naive.pvalue < 1e-6
    assert wrong and {r["value"] for r in wrong} <= {"dog", "bird"}
    figures["p_values"] = {
        "presence": p_presence,
        "confidence": ks_conf.pvalue,
        "id format": p_ids,
        "lease length": ks_lease.pvalue,
        "time to serve": ks_serve.pvalue,
    }
    return figures
