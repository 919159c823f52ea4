"""What `bench/scale.py` reads from the stack's /metrics while and after the load: the
model versions serving and their re-scoring backlog (inference), hand-out time and
ranking staleness (sampler), and the gateway's refill: its batches from the sampler by
outcome, items queued, the ready queue against its low-water mark, second by second."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from typing import Any

from strata.cli.progress import ProgressBar

from tests.browser.support import Stack


def metrics_text(stack: Stack, service: str) -> str:
    """A service's /metrics page ("" when it exports none)."""
    import urllib.request

    state = json.loads((stack.home / ".strata" / "stack.json").read_text())
    url = state["services"][service].get("metrics")
    if not url:
        return ""
    return urllib.request.urlopen(url, timeout=10).read().decode()


def watch_scoring(stack: Stack, project: str, stop: threading.Event, out: list) -> None:
    """Every 2 s: (time, the model version serving `project`, its scoring backlog), from
    inference's /metrics."""
    while not stop.is_set():
        try:
            text = metrics_text(stack, "inference")
        except OSError:
            text = ""
        version, backlog = None, None
        for line in text.splitlines():
            if f'project="{project}"' not in line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            if "_model_serving{" in name and float(value) == 1.0:
                version = name.split('version="')[1].split('"')[0]
            elif "_scoring_backlog{" in name:
                backlog = float(value)
        out.append((time.time(), version, backlog))
        stop.wait(2.0)


def rescoring(samples: list[tuple[float, str | None, float | None]]) -> dict[str, Any]:
    """Each model version that began serving while watched: its backlog at the start,
    what was left at the end, the seconds it took to drain (None: not within the
    window) and the items scored per second meanwhile."""
    versions: list[dict[str, Any]] = []
    start = (samples[0][0], None, None) if samples else (0.0, None, None)
    for (_, before, _), (t, version, backlog) in itertools.pairwise([start, *samples]):
        if version and version != before:
            # A version serving when the watch began started scoring earlier than `t`.
            first = t == start[0]
            versions.append({"version": version, "began": t, "serving_already": first, "trace": []})
        if versions and version == versions[-1]["version"] and backlog is not None:
            versions[-1]["trace"].append((t, backlog))
    out = []
    for v in versions:
        trace = v.pop("trace")
        # The gauge may still read 0 (the last version's) in the first sample: measure
        # from the highest backlog to the first 0 after it.
        top = max(range(len(trace)), key=lambda k: trace[k][1], default=0)
        peak = trace[top][1] if trace else 0.0
        drained = next((t for t, b in trace[top:] if b == 0), None)
        last_t, last_b = trace[-1] if trace else (v["began"], peak)
        took = (drained or last_t) - v["began"]
        out.append(
            {
                "version": v["version"],
                "serving_when_watch_began": v["serving_already"],
                "backlog_at_start": peak,
                "left_at_end": 0.0 if drained else last_b,
                "seconds_to_drain": round(drained - v["began"], 1) if drained else None,
                "items_scored_per_s": round((peak - (0 if drained else last_b)) / took)
                if took > 0
                else None,
            }
        )
    return {"versions": out}


def drain(stack: Stack, project: str, limit_s: float) -> dict[str, Any]:
    """After the load, with no client left: watch inference re-score the pool until the
    serving version has scored every item (a version whose backlog was seen above 0 and
    is now 0), no version has changed for a minute with nothing left, or `limit_s`
    passed. Models that training publishes meanwhile (requests queued during the load)
    re-score the pool again, and are measured the same way."""
    samples: list[tuple[float, str | None, float | None]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_scoring, args=(stack, project, stop, samples))
    watcher.start()
    began = time.time()
    bar = ProgressBar("re-scoring after the load (s)", int(limit_s))
    try:
        while time.time() - began < limit_s:
            time.sleep(2.0)
            bar.update(int(time.time() - began))
            if not samples or samples[-1][1] is None or samples[-1][2] != 0:
                continue
            version = samples[-1][1]
            seen = [b for _, v, b in samples if v == version and b]
            since = next(t for t, v, _ in samples if v == version)
            if seen or time.time() - since > 60:
                break
    finally:
        stop.set()
        watcher.join()
        bar.close()
    return {"waited_s": round(time.time() - began, 1), **rescoring(samples)}


def sampler_metrics(stack: Stack) -> dict[str, float]:
    """The sampler's own figures from its /metrics, over every run of the stack so far:
    hand-out time (`rank_seconds`) and how many model versions behind each batch's
    ranking was (`ranking_versions_behind`)."""
    text = metrics_text(stack, "sampler")
    if not text:
        return {}
    wanted = (
        "rank_seconds_sum",
        "rank_seconds_count",
        "ranking_versions_behind_sum",
        "ranking_versions_behind_count",
    )
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not any(w in line for w in wanted):
            continue
        name, _, value = line.rpartition(" ")
        found[name] = found.get(name, 0.0) + float(value)
    return found


REFILL_SERIES = (
    "ok",
    "empty",
    "error",
    "items",
    "ready",
    "mark",
    "refills",
    "refill_s",
    "handouts",
    "handout_s",
)


def refill_reading(text: str, project: str) -> dict[str, float]:
    """The gateway's refill for `project` in /metrics pages (the gateway's, then the
    sampler's): batches by outcome and items queued (counters), the ready queue and its
    low-water mark (gauges), its refills and their seconds, and the sampler's hand-outs
    and theirs (histograms over every project)."""
    found = dict.fromkeys(REFILL_SERIES, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name == "strata_sampler_rank_seconds_count":
            found["handouts"] = float(value)
        elif name == "strata_sampler_rank_seconds_sum":
            found["handout_s"] = float(value)
        elif name == "strata_gateway_refill_seconds_count":
            found["refills"] = float(value)
        elif name == "strata_gateway_refill_seconds_sum":
            found["refill_s"] = float(value)
        elif f'project="{project}"' not in name:
            continue
        elif name.startswith("strata_gateway_sampler_batches_total"):
            outcome = name.split('outcome="')[1].split('"')[0]
            if outcome in found:
                found[outcome] += float(value)
        elif name.startswith("strata_gateway_sampler_items_total"):
            found["items"] += float(value)
        elif name.startswith("strata_gateway_queue_ready_slots"):
            found["ready"] = float(value)
        elif name.startswith("strata_gateway_refill_low_water_slots"):
            found["mark"] = float(value)
    return found


def watch_refill(
    stack: Stack, project: str, stop: threading.Event, out: list, every_s: float = 0.5
) -> None:
    """Every `every_s`: (time, the refill reading for `project`)."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            pages = metrics_text(stack, "gateway") + "\n" + metrics_text(stack, "sampler")
            out.append((time.time(), refill_reading(pages, project)))
        stop.wait(every_s)


def refill_by_second(
    samples: list[tuple[float, dict[str, float]]], since: float, seconds: float
) -> list[dict[str, float]]:
    """For each second of the measured window: the gateway's sampler batches that came
    back ok, empty or failed, the items they queued, its refills' mean seconds, the
    sampler's hand-outs that ended and their mean seconds, and the lowest ready queue
    and highest mark read: why a second found the queue dry."""
    out: list[dict[str, float]] = []
    before = next((r for t, r in reversed(samples) if t <= since), None)
    for k in range(int(seconds)):
        inside = [r for t, r in samples if since + k < t <= since + k + 1]
        if not inside or before is None:
            out.append({})
            continue
        last = inside[-1]
        row = {c: last[c] - before[c] for c in ("ok", "empty", "error", "items")}
        refills = last["refills"] - before["refills"]
        row["refill_mean_s"] = (
            round((last["refill_s"] - before["refill_s"]) / refills, 3) if refills else 0.0
        )
        handouts = last["handouts"] - before["handouts"]
        row["handouts"] = handouts
        row["handout_mean_s"] = (
            round((last["handout_s"] - before["handout_s"]) / handouts, 3) if handouts else 0.0
        )
        row["ready_min"] = min(r["ready"] for r in inside)
        row["mark_max"] = max(r["mark"] for r in inside)
        out.append(row)
        before = last
    return out


def refill_batches(stack: Stack, project: str) -> dict[str, float]:
    """The gateway's batches from the sampler for `project` (its /metrics): how many
    came back with items, empty or failed, and how many items each brought on average."""
    reading = refill_reading(metrics_text(stack, "gateway"), project)
    found = {
        "batches": reading["ok"],
        "empty": reading["empty"],
        "errors": reading["error"],
        "items": reading["items"],
    }
    if found["batches"]:
        found["items_per_batch"] = round(found["items"] / found["batches"], 1)
    return found
