"""Can gold be told apart from pool tasks? Five seeds of 600 tasks served to a crowd.

A real gateway (mutual TLS, Postgres, broker) serves a project whose model is confident on
gold and unsure on the pool people see (auto-accept took the confident pool items; a few
spot checks remain): the setting in which showing gold's own predictions gives gold away.
Per seed: chi-square on pre-label presence and on the task id's first hex digit, KS on the
shown confidence, lease length and time to serve; the share of gold among tasks with a
confident (>= 0.95) pre-label against its share overall; and the same KS test on the
confidences a naive gateway would have shown on gold. Medians and spread over the seeds,
written to bench/results/gold_indistinguishability.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from pathlib import Path

from harness import report
from strata.common.config import ServiceConfig
from strata.common.embedded import EmbeddedPostgres, free_port

from tests.integration.conftest import start_broker
from tests.integration.gateway_support import gateway_settings, scripted_sampler, start_gateway
from tests.integration.gold_support import ALPHA, measure
from tests.pki import service_tls


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as home:
        pg = EmbeddedPostgres(Path(home) / "pgdata", free_port())
        pg.start()
        broker = start_broker(Path(home))
        try:
            with scripted_sampler() as (source, address):
                config = ServiceConfig(
                    service=f"gateway_{uuid.uuid4().hex[:8]}",
                    pg_dsn=pg.dsn,
                    kafka_bootstrap=broker.bootstrap,
                    tls=service_tls("gateway"),
                    identity="gateway",
                )
                gw = start_gateway(
                    config, gateway_settings(address, refill_low_water=100, refill_batch=100)
                )
                try:
                    for seed in range(1, args.seeds + 1):
                        runs.append(measure(gw, source, broker.bootstrap, seed))
                        p = runs[-1]["p_values"]
                        print(f"seed {seed}: " + ", ".join(f"{k} p={v:.3f}" for k, v in p.items()))
                finally:
                    gw.channel.close()
                    gw.runtime.stop(grace_s=1.0)
        finally:
            broker.stop()
            pg.stop()
    names = list(runs[0]["p_values"])
    figures: dict[str, object] = {
        "seeds": len(runs),
        "tasks_per_seed": summary([float(r["tasks"]) for r in runs]),
        "gold_tasks_per_seed": summary([float(r["gold"]) for r in runs]),
        "alpha": ALPHA,
        "p_values": {n: summary([r["p_values"][n] for r in runs]) for n in names},
        "seeds_with_p_below_alpha": {
            n: sum(1 for r in runs if r["p_values"][n] <= ALPHA) for n in names
        },
        "confidence_ks": summary([r["confidence"]["ks"] for r in runs]),
        "gold_share_overall": summary([r["confidence"]["gold_share_overall"] for r in runs]),
        "gold_share_among_confident_prelabels": summary(
            [
                r["confidence"]["gold_share_among_confident"]
                for r in runs
                if r["confidence"]["gold_share_among_confident"] is not None
            ]
        ),
        "naive_gold_share_among_confident_prelabels": summary(
            [r["confidence"]["naive_gold_share_among_confident"] for r in runs]
        ),
        "presence_gold": summary([r["presence"]["gold"] for r in runs]),
        "presence_pool": summary([r["presence"]["pool"] for r in runs]),
        "median_serve_ms_gold": summary([r["time_to_serve"]["median_ms_gold"] for r in runs]),
        "median_serve_ms_pool": summary([r["time_to_serve"]["median_ms_pool"] for r in runs]),
        "naive_gateway_confidence_ks_p": summary([r["naive_confidence"]["p"] for r in runs]),
        "gold_wrong_prelabels_per_seed": summary([float(r["gold_wrong_prelabels"]) for r in runs]),
    }
    report("gold_indistinguishability", figures)


if __name__ == "__main__":
    main()
