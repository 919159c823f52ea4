"""The inference service's own settings, on top of the kit's ServiceConfig."""

from __future__ import annotations

from dataclasses import dataclass

from strata.common.config import parse_address, parse_float, parse_int, setting


@dataclass(frozen=True)
class InferenceConfig:
    """Scoring batches, calibration, Predict batching, and who may roll a model back."""

    gateway_address: str = setting(
        "STRATA_GATEWAY_ADDRESS",
        parse_address,
        "",
        "gateway gRPC host:port that checks callers' bearer tokens (unset: RollbackModel "
        "is refused)",
    )
    score_batch: int = setting(
        "STRATA_INFERENCE_SCORE_BATCH",
        parse_int(1, 100_000),
        2048,
        "pool items scored, published and marked per transaction",
    )
    min_gold: int = setting(
        "STRATA_INFERENCE_MIN_GOLD",
        parse_int(2, 1_000_000),
        30,
        "gold items with answers needed to fit temperature scaling",
    )
    min_support: int = setting(
        "STRATA_INFERENCE_AUTO_ACCEPT_MIN_SUPPORT",
        parse_int(1, 1_000_000),
        20,
        "gold predictions above the auto-accept threshold needed to measure its precision",
    )
    bald_samples: int = setting(
        "STRATA_INFERENCE_BALD_SAMPLES",
        parse_int(2, 100),
        10,
        "MC-dropout passes per item when the contract's strategy is BALD",
    )
    predict_max_items: int = setting(
        "STRATA_INFERENCE_PREDICT_MAX_ITEMS",
        parse_int(1, 100_000),
        1024,
        "most items one Predict call may ask for",
    )
    predict_wait_ms: float = setting(
        "STRATA_INFERENCE_PREDICT_WAIT_MS",
        parse_float(0.0, 100.0),
        1.0,
        "how long a Predict waits for concurrent calls to share one forward pass",
    )
    registry_poll_s: float = setting(
        "STRATA_INFERENCE_REGISTRY_POLL_S",
        parse_float(0.05, 60.0),
        0.5,
        "how often each replica checks which model version serves each project",
    )
