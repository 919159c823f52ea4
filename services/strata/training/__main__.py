"""`python -m strata.training`: wire the training service and run it."""

from __future__ import annotations

import os
import sys

from strata.common.access import RemoteDirectory
from strata.common.config import ServiceConfig, load
from strata.common.contracts import ContractCache
from strata.common.db import load_migrations, package_migrations
from strata.common.grpcserver import ServicerBinding
from strata.common.service import ServiceRuntime, main_guard
from strata.training import store
from strata.training.config import TrainingConfig
from strata.training.handlers import TrainingHandlers
from strata.training.metrics import TrainingMetrics
from strata.training.runs import RunExecutor
from strata.training.server import TrainingServicer
from strata.v1 import gateway_pb2_grpc, training_pb2_grpc


def build(config: ServiceConfig, training: TrainingConfig | None = None) -> ServiceRuntime:
    """The training process: label copy, run queue and executor (Ray), gRPC."""
    t = training or load(TrainingConfig, os.environ)
    rt = ServiceRuntime(config, load_migrations("training", package_migrations("strata.training")))
    metrics = TrainingMetrics(config.service, rt.metrics.registry)
    contracts = ContractCache(rt.db, store.load_contract)
    gateway = None
    if t.gateway_address:
        gateway = gateway_pb2_grpc.AnnotationGatewayStub(rt.channel(t.gateway_address))
    rt.set_directory(RemoteDirectory(gateway))
    rt.add_servicer(
        ServicerBinding(
            training_pb2_grpc.add_TrainingServicer_to_server,
            TrainingServicer(rt.db, contracts, rt.guard, t),
            "strata.v1.Training",
        )
    )
    rt.add_consumer(TrainingHandlers(contracts, metrics, t).routes())
    executor = RunExecutor(rt.db, config.pg_dsn, contracts, metrics, t)
    rt.add_background("runs", executor.run)
    rt.add_background("run-heartbeat", executor.heartbeat)
    return rt


if __name__ == "__main__":
    sys.exit(main_guard("training", build))
