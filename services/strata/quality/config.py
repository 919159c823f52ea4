"""The quality service's own settings, on top of the kit's ServiceConfig."""

from __future__ import annotations

from dataclasses import dataclass

from strata.common.config import parse_address, parse_float, parse_int, setting


@dataclass(frozen=True)
class QualityConfig:
    """Consensus re-estimation, label-error detection, and who may read reports."""

    gateway_address: str = setting(
        "STRATA_GATEWAY_ADDRESS",
        parse_address,
        "",
        "gateway gRPC host:port that checks callers' bearer tokens (unset: RPCs that "
        "need a reviewer or admin are refused)",
    )
    training_address: str = setting(
        "STRATA_TRAINING_ADDRESS",
        parse_address,
        "",
        "training gRPC host:port, asked how deep each exported item's label reached in "
        "the newest run (unset: exports leave influence_depth empty)",
    )
    estimate_interval_s: float = setting(
        "STRATA_QUALITY_ESTIMATE_INTERVAL_S",
        parse_float(0.2, 3600),
        5.0,
        "how often each project's Dawid-Skene model is re-estimated when new votes came in",
    )
    prior_strength: float = setting(
        "STRATA_QUALITY_PRIOR_STRENGTH",
        parse_float(0, 1000),
        10.0,
        "pseudo-labels per class behind each annotator's prior confusion matrix (and "
        "pseudo-items per class behind the class priors): a full confusion matrix is "
        "many numbers, so an annotator's own labels take over only once there are many",
    )
    prior_accuracy: float = setting(
        "STRATA_QUALITY_PRIOR_ACCURACY",
        parse_float(0.01, 0.99),
        0.7,
        "accuracy assumed for an annotator with no labels yet",
    )
    gold_min_answered: int = setting(
        "STRATA_QUALITY_GOLD_MIN_ANSWERED",
        parse_int(1, 10_000),
        5,
        "gold answers needed before an annotator can be sent to retrain or blocked",
    )
    second_opinion_votes: int = setting(
        "STRATA_QUALITY_SECOND_OPINION_VOTES",
        parse_int(0, 1000),
        2,
        "an expert's review answer that overturns at least this many annotators who all "
        "agreed goes to a second expert, who decides (0: the first expert always decides)",
    )
    label_error_interval_s: float = setting(
        "STRATA_QUALITY_LABEL_ERROR_INTERVAL_S",
        parse_float(0.2, 86_400),
        10.0,
        "how often accepted labels are audited against the model's predictions",
    )
    label_error_min_items: int = setting(
        "STRATA_QUALITY_LABEL_ERROR_MIN_ITEMS",
        parse_int(2, 10_000_000),
        50,
        "accepted items with a prediction needed before label errors are searched for",
    )
    label_error_min_model_accuracy: float = setting(
        "STRATA_QUALITY_LABEL_ERROR_MIN_MODEL_ACCURACY",
        parse_float(0.0, 1.0),
        0.85,
        "lower 95% bound of the model's gold accuracy needed before its disagreements "
        "with accepted labels are sent to review",
    )
    relabel_budget: int = setting(
        "STRATA_QUALITY_RELABEL_BUDGET",
        parse_int(0, 100_000),
        50,
        "most suspected label errors sent to review per project and audit round",
    )
    max_poll_records: int = setting(
        "STRATA_QUALITY_MAX_POLL_RECORDS",
        parse_int(1, 10_000),
        1000,
        "labels taken per partition and transaction",
    )
    contract_wait_s: float = setting(
        "STRATA_QUALITY_CONTRACT_WAIT_S",
        parse_float(0, 3600),
        60.0,
        "how long labels for a contract version not yet received wait before dead-lettering",
    )
    auth_cache_s: float = setting(
        "STRATA_QUALITY_AUTH_CACHE_S",
        parse_float(0, 300),
        5.0,
        "how long a caller's token check is cached",
    )
    import_item_wait_s: float = setting(
        "STRATA_QUALITY_IMPORT_ITEM_WAIT_S",
        parse_float(0, 600),
        15.0,
        "how long an import of answers waits for items it does not know yet (imported "
        "moments before, still on their way to quality) before reporting them unknown",
    )
    gauge_interval_s: float = setting(
        "STRATA_QUALITY_GAUGE_INTERVAL_S",
        parse_float(0.5, 3600),
        15.0,
        "how often the agreement, gold-accuracy and review-backlog gauges are refreshed",
    )
    gauge_recent_votes: int = setting(
        "STRATA_QUALITY_GAUGE_RECENT_VOTES",
        parse_int(100, 10_000_000),
        20_000,
        "the agreement gauge measures each project's newest this many votes (its cost "
        "stays flat as a project grows; the dataset report measures every vote)",
    )
