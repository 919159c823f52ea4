"""`python -m strata.quality`: wire the quality service and run it."""

from __future__ import annotations

import logging
import os
import sys

from strata.common.access import RemoteDirectory
from strata.common.config import ServiceConfig, load
from strata.common.consumer import BatchContext
from strata.common.contracts import ContractCache
from strata.common.db import load_migrations, package_migrations
from strata.common.grpcserver import ServicerBinding
from strata.common.service import ServiceRuntime, main_guard
from strata.quality import store
from strata.quality.background import Estimator, Gauges, LabelErrorAuditor, every
from strata.quality.config import QualityConfig
from strata.quality.handlers import EstimateCache, QualityHandlers
from strata.quality.imports import VoteImporter
from strata.quality.lineage import TrainedDepths
from strata.quality.metrics import QualityMetrics
from strata.quality.server import QualityServicer
from strata.v1 import gateway_pb2_grpc, quality_pb2_grpc, training_pb2_grpc

log = logging.getLogger("strata.quality")


def build(config: ServiceConfig, quality: QualityConfig | None = None) -> ServiceRuntime:
    """The quality process: consumer of labels, background estimation and audits, servicer."""
    q = quality or load(QualityConfig, os.environ)
    rt = ServiceRuntime(config, load_migrations("quality", package_migrations("strata.quality")))
    metrics = QualityMetrics(config.service, rt.metrics.registry)
    contracts = ContractCache(rt.db, store.load_contract)
    handlers = QualityHandlers(
        contracts,
        EstimateCache(rt.db),
        metrics,
        prior_accuracy=q.prior_accuracy,
        gold_min_answered=q.gold_min_answered,
        second_opinion_votes=q.second_opinion_votes,
        audit=rt.guard.audit,
    )
    rt.add_consumer(
        handlers.routes(), max_poll_records=q.max_poll_records, defer_limit_s=q.contract_wait_s
    )
    gateway = None
    if q.gateway_address:
        gateway = gateway_pb2_grpc.AnnotationGatewayStub(rt.channel(q.gateway_address))
    rt.set_directory(RemoteDirectory(gateway, q.auth_cache_s))

    def redecide(project: str) -> None:
        with rt.db.transaction() as conn:
            ctx = BatchContext(conn, [])
            accepted = handlers.redecide(ctx, project)
            ctx.flush()
        if accepted:
            log.info("%s: %d waiting items accepted under the new estimate", project, accepted)

    estimator = Estimator(
        rt.db,
        contracts,
        metrics,
        prior_strength=q.prior_strength,
        prior_accuracy=q.prior_accuracy,
        on_estimated=redecide,
    )
    importer = VoteImporter(
        rt.db, contracts, handlers, estimator.estimate, item_wait_s=q.import_item_wait_s
    )
    trained = (
        TrainedDepths(training_pb2_grpc.TrainingStub(rt.channel(q.training_address)))
        if q.training_address
        else None
    )
    servicer = QualityServicer(rt.db, rt.guard, contracts, importer, trained)
    rt.add_servicer(
        ServicerBinding(
            quality_pb2_grpc.add_QualityServicer_to_server, servicer, "strata.v1.Quality"
        )
    )
    auditor = LabelErrorAuditor(
        rt.db,
        metrics,
        min_items=q.label_error_min_items,
        budget=q.relabel_budget,
        min_model_accuracy=q.label_error_min_model_accuracy,
    )
    rt.add_background("estimate", every(q.estimate_interval_s, estimator.run_once, "estimate"))
    rt.add_background(
        "label-errors", every(q.label_error_interval_s, auditor.run_once, "label-error audit")
    )
    gauges = Gauges(rt.db, contracts, metrics, recent_votes=q.gauge_recent_votes)
    rt.add_background("gauges", every(q.gauge_interval_s, gauges.run_once, "gauges"))
    return rt


if __name__ == "__main__":
    sys.exit(main_guard("quality", build))
