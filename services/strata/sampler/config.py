"""The sampler's own settings, on top of the kit's ServiceConfig."""

from __future__ import annotations

from dataclasses import dataclass

from strata.common.config import parse_address, parse_float, parse_int, setting


@dataclass(frozen=True)
class SamplerConfig:
    """Deduplication thresholds, batch hand-out and lease."""

    gateway_address: str = setting(
        "STRATA_GATEWAY_ADDRESS",
        parse_address,
        "",
        "gateway gRPC host:port that checks people's bearer tokens (unset: only services "
        "can call the sampler)",
    )
    text_threshold: float = setting(
        "STRATA_SAMPLER_TEXT_DUP_THRESHOLD",
        parse_float(0.1, 1.0),
        0.8,
        "Jaccard similarity (word 3-grams) from which a text is a near-duplicate",
    )
    vector_threshold: float = setting(
        "STRATA_SAMPLER_VECTOR_DUP_THRESHOLD",
        parse_float(0.5, 1.0),
        0.98,
        "cosine similarity from which a feature vector is a near-duplicate",
    )
    image_threshold: float = setting(
        "STRATA_SAMPLER_IMAGE_DUP_THRESHOLD",
        parse_float(0.5, 1.0),
        0.97,
        "cosine similarity of two images' mean-centred 16x16 grey thumbnails from which "
        "one is a near-duplicate of the other",
    )
    explore_fraction: float = setting(
        "STRATA_SAMPLER_EXPLORE_FRACTION",
        parse_float(0.0, 1.0),
        0.1,
        "share of each batch drawn at random (RANDOM_QA), so quality estimates stay unbiased",
    )
    boost_weight: float = setting(
        "STRATA_SAMPLER_BOOST_WEIGHT",
        parse_float(0.0, 10.0),
        1.0,
        "how much the rare-class and confused-class boosts scale the uncertainty score "
        "(0: ranking by uncertainty and diversity alone)",
    )
    lease_s: int = setting(
        "STRATA_SAMPLER_LEASE_S",
        parse_int(10, 30 * 86_400),
        86_400,
        "how long a handed-out item stays in flight when the caller gives no lease",
    )
    import_chunk_rows: int = setting(
        "STRATA_SAMPLER_IMPORT_CHUNK_ROWS",
        parse_int(1, 100_000),
        5_000,
        "rows an import stores per transaction (requests are gathered up to it): fewer "
        "round trips and index look-ups per row",
    )
    max_batch: int = setting(
        "STRATA_SAMPLER_MAX_BATCH", parse_int(1, 100_000), 10_000, "largest NextBatch size"
    )
