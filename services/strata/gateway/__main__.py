"""`python -m strata.gateway`: wire the annotation gateway and run it."""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from strata.common.audit import AuditEntry, TableAudit
from strata.common.config import ServiceConfig, load
from strata.common.contracts import ContractCache
from strata.common.db import load_migrations, package_migrations
from strata.common.grpcserver import ServicerBinding
from strata.common.service import ServiceRuntime, main_guard
from strata.gateway import people, store
from strata.gateway.auth import Authenticator, LocalDirectory, hash_token
from strata.gateway.config import GatewayConfig
from strata.gateway.handlers import GatewayHandlers
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.refill import LeaseSweeper, Refiller
from strata.gateway.server import GatewayServicer, load_contract_files, lookup_principal
from strata.gateway.submit import SubmitBatcher
from strata.v1 import gateway_pb2_grpc, sampler_pb2_grpc

log = logging.getLogger("strata.gateway")

BOOTSTRAP_ADMIN = "admin"


def build(config: ServiceConfig, gateway: GatewayConfig | None = None) -> ServiceRuntime:
    """The gateway process: servicer, event handlers, refill, lease sweep, group commit."""
    gw = gateway or load(GatewayConfig, os.environ)
    rt = ServiceRuntime(
        config,
        load_migrations("gateway", package_migrations("strata.gateway")),
        grpc_workers=gw.grpc_workers,
    )
    metrics = GatewayMetrics(config.service, rt.metrics.registry)
    contracts = ContractCache(rt.db, store.load_contract)
    auth = Authenticator(lookup_principal(rt.db), gw.auth_cache_s)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    rt.set_directory(LocalDirectory(auth, clock))
    rt.guard.audit = TableAudit(rt.db.transaction)
    batcher = SubmitBatcher(rt.db, contracts, metrics, max_batch=gw.submit_batch_max)
    sampler = None
    if gw.sampler_address:
        sampler = sampler_pb2_grpc.SamplerStub(rt.channel(gw.sampler_address))
    sampler_up = rt.metrics.dependency_up.labels(dependency="sampler")
    refiller = Refiller(
        rt.db,
        contracts,
        metrics,
        sampler,
        requester=f"gateway-{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
        low_water=gw.refill_low_water,
        batch_size=gw.refill_batch,
        sampler_lease_s=gw.sampler_lease_s,
        interval_s=gw.refill_interval_s,
        ahead_s=gw.refill_ahead_s,
        demand_window_s=gw.refill_demand_window_s,
        max_slots=gw.refill_max_slots,
        on_sampler_state=lambda up: sampler_up.set(1 if up else 0),
    )
    servicer = GatewayServicer(
        rt.db,
        auth,
        rt.guard,
        contracts,
        batcher,
        refiller,
        metrics,
        default_lease_s=gw.lease_seconds,
        max_value_bytes=gw.max_value_bytes,
        retry_after_ms=gw.retry_after_ms,
    )
    rt.add_servicer(
        ServicerBinding(
            gateway_pb2_grpc.add_AnnotationGatewayServicer_to_server,
            servicer,
            "strata.v1.AnnotationGateway",
        )
    )
    rt.add_consumer(GatewayHandlers(auth).routes())
    for i in range(gw.submit_writers):
        rt.add_background(f"submit-writer-{i}", batcher.run)
    rt.add_background("refill", refiller.run)
    rt.add_background("lease-sweep", LeaseSweeper(rt.db, metrics, gw.sweep_interval_s).run)
    if gw.admin_token:
        token_hash = hash_token(gw.admin_token)
        expires = datetime.now(UTC) + timedelta(days=gw.admin_token_ttl_days)

        def bootstrap_admin() -> None:
            with rt.db.transaction() as conn:
                added, revoked = people.ensure_bootstrap_admin(
                    conn, BOOTSTRAP_ADMIN, token_hash, expires
                )
                if added or revoked:
                    people.audit(
                        conn,
                        AuditEntry(
                            service="gateway",
                            action="bootstrap_admin",
                            actor="system",
                            actor_kind="system",
                            target=BOOTSTRAP_ADMIN,
                            detail={"token_added": added, "old_tokens_revoked": revoked},
                        ),
                    )
            if revoked:
                log.warning("bootstrap admin token rotated: %d old token(s) revoked", revoked)

        rt.add_startup(bootstrap_admin)
    if gw.contracts_dir:
        folder = Path(gw.contracts_dir)

        def load_contracts() -> None:
            for line in load_contract_files(rt.db, folder):
                log.info("contract %s", line)

        rt.add_startup(load_contracts)
    return rt


if __name__ == "__main__":
    sys.exit(main_guard("gateway", build))
