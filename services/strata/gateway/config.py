"""The gateway's own settings, on top of the kit's ServiceConfig."""

from __future__ import annotations

from dataclasses import dataclass

from strata.common.config import parse_address, parse_float, parse_int, setting
from strata.gateway.policy import MOST_PER_BATCH


def parse_token(raw: str) -> str:
    token = raw.strip()
    if not token.startswith("stk_") or len(token) < 36:
        raise ValueError("must be a Strata token: 'stk_' and at least 32 random characters")
    return token


@dataclass(frozen=True)
class GatewayConfig:
    """Assignment, leases, refill from the sampler, auth and submit batching."""

    sampler_address: str = setting(
        "STRATA_SAMPLER_ADDRESS",
        parse_address,
        "",
        "sampler gRPC host:port the gateway pulls ranked batches from (unset: no refill)",
    )
    admin_token: str = setting(
        "STRATA_GATEWAY_ADMIN_TOKEN",
        parse_token,
        "",
        help="bootstrap admin bearer token (stk_...); its hash is stored for annotator 'admin'",
    )
    admin_token_ttl_days: int = setting(
        "STRATA_GATEWAY_ADMIN_TOKEN_TTL_DAYS",
        parse_int(1, 90),
        30,
        "lifetime of the bootstrap admin token from its first use; rotate it by setting a new one",
    )
    contracts_dir: str = setting(
        "STRATA_GATEWAY_CONTRACTS_DIR",
        default="",
        help="load every contract file (*.yaml, *.yml, *.json) in this folder at start; "
        "the same text again changes nothing (Kubernetes mounts a ConfigMap here)",
    )
    lease_seconds: int = setting(
        "STRATA_GATEWAY_LEASE_S",
        parse_int(1, 7 * 86_400),
        600,
        "task lease when the contract sets none, seconds",
    )
    refill_low_water: int = setting(
        "STRATA_GATEWAY_REFILL_LOW_WATER",
        parse_int(0, 1_000_000),
        200,
        "with no demand measured, pull a batch from the sampler when fewer open task slots "
        "than this remain (a contract's active_learning.batch_size lowers it)",
    )
    refill_batch: int = setting(
        "STRATA_GATEWAY_REFILL_BATCH",
        parse_int(1, 10_000),
        100,
        "items per sampler batch at rest (a contract's active_learning.batch_size lowers it; "
        "under demand a batch grows to what the queue lacks of its low-water mark, up to "
        f"{MOST_PER_BATCH})",
    )
    refill_interval_s: float = setting(
        "STRATA_GATEWAY_REFILL_INTERVAL_S", parse_float(0.05, 60), 0.5, "refill check period"
    )
    refill_ahead_s: float = setting(
        "STRATA_GATEWAY_REFILL_AHEAD_S",
        parse_float(0, 600),
        3.0,
        "seconds of measured demand the ready queue holds on top of the time a refill "
        "takes: the low-water mark follows the hand-out rate",
    )
    refill_demand_window_s: float = setting(
        "STRATA_GATEWAY_REFILL_DEMAND_WINDOW_S",
        parse_float(1, 3600),
        10.0,
        "how far back label tasks handed out (by every replica) are counted to measure demand",
    )
    refill_max_slots: int = setting(
        "STRATA_GATEWAY_REFILL_MAX_SLOTS",
        parse_int(1, 1_000_000),
        2_000,
        "the highest the demand-driven low-water mark goes, in open task slots",
    )
    sampler_lease_s: int = setting(
        "STRATA_GATEWAY_SAMPLER_LEASE_S",
        parse_int(60),
        86_400,
        "how long the sampler keeps a handed-out item in flight, seconds",
    )
    sweep_interval_s: float = setting(
        "STRATA_GATEWAY_SWEEP_INTERVAL_S",
        parse_float(0.05, 60),
        1.0,
        "how often expired leases are returned to the queue, seconds",
    )
    auth_cache_s: float = setting(
        "STRATA_GATEWAY_AUTH_CACHE_S",
        parse_float(0, 300),
        2.0,
        "how long a token lookup is cached; revocation reaches other replicas within this",
    )
    submit_batch_max: int = setting(
        "STRATA_GATEWAY_SUBMIT_BATCH_MAX",
        parse_int(1, 10_000),
        128,
        "labels committed together in one transaction (group commit)",
    )
    submit_writers: int = setting(
        "STRATA_GATEWAY_SUBMIT_WRITERS",
        parse_int(1, 64),
        1,
        "threads committing label batches (one gives the biggest group commits)",
    )
    max_value_bytes: int = setting(
        "STRATA_GATEWAY_MAX_VALUE_BYTES", parse_int(1, 65_536), 256, "largest label value"
    )
    grpc_workers: int = setting(
        "STRATA_GATEWAY_GRPC_WORKERS", parse_int(1, 1024), 64, "gRPC worker threads"
    )
    retry_after_ms: int = setting(
        "STRATA_GATEWAY_RETRY_AFTER_MS",
        parse_int(0, 600_000),
        1000,
        "what NextTask tells a client to wait when there is no work",
    )
