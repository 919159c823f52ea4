"""`python -m strata.inference`: wire the inference service and run it."""

from __future__ import annotations

import os
import sys

from strata.common.access import RemoteDirectory
from strata.common.config import ServiceConfig, load
from strata.common.contracts import ContractCache
from strata.common.db import load_migrations, package_migrations
from strata.common.grpcserver import ServicerBinding
from strata.common.service import ServiceRuntime, main_guard
from strata.inference import store
from strata.inference.config import InferenceConfig
from strata.inference.handlers import InferenceHandlers
from strata.inference.metrics import InferenceMetrics
from strata.inference.pool import PoolScorer
from strata.inference.registry import Registry
from strata.inference.server import InferenceServicer, Predictor
from strata.v1 import gateway_pb2_grpc, inference_pb2_grpc


def build(config: ServiceConfig, inference: InferenceConfig | None = None) -> ServiceRuntime:
    """The inference process: registry follower, pool scorer, Predict batcher, handlers."""
    s = inference or load(InferenceConfig, os.environ)
    rt = ServiceRuntime(
        config, load_migrations("inference", package_migrations("strata.inference"))
    )
    metrics = InferenceMetrics(config.service, rt.metrics.registry)
    contracts = ContractCache(rt.db, store.load_contract)
    registry = Registry(rt.db, metrics)
    predictor = Predictor(metrics, s.predict_wait_ms / 1000.0, s.predict_max_items)
    gateway = None
    if s.gateway_address:
        gateway = gateway_pb2_grpc.AnnotationGatewayStub(rt.channel(s.gateway_address))
    rt.set_directory(RemoteDirectory(gateway))
    servicer = InferenceServicer(rt.db, registry, predictor, contracts, rt.guard, metrics, s)
    rt.add_servicer(
        ServicerBinding(
            inference_pb2_grpc.add_InferenceServicer_to_server, servicer, "strata.v1.Inference"
        )
    )
    rt.add_consumer(InferenceHandlers(contracts, registry, metrics, s).routes())
    scorer = PoolScorer(rt.db, registry, contracts, metrics, s)
    rt.add_background("registry", lambda stop: registry.run(stop, s.registry_poll_s))
    rt.add_background("predict-batcher", predictor.run)
    rt.add_background("pool-scorer", scorer.run)
    return rt


if __name__ == "__main__":
    sys.exit(main_guard("inference", build))
