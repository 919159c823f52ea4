"""`python -m strata.sampler`: wire the sampler and run it."""

from __future__ import annotations

import os
import sys

from strata.common.access import RemoteDirectory
from strata.common.config import ServiceConfig, load
from strata.common.contract_store import load_contract
from strata.common.contracts import ContractCache
from strata.common.db import load_migrations, package_migrations
from strata.common.grpcserver import ServicerBinding
from strata.common.service import ServiceRuntime, main_guard
from strata.sampler import store
from strata.sampler.config import SamplerConfig
from strata.sampler.handlers import SamplerHandlers
from strata.sampler.metrics import SamplerMetrics
from strata.sampler.pool import Importer
from strata.sampler.server import SamplerServicer
from strata.v1 import gateway_pb2_grpc, sampler_pb2_grpc


def build(config: ServiceConfig, sampler: SamplerConfig | None = None) -> ServiceRuntime:
    """The sampler process: import and hand-out servicer, event handlers, lease sweep."""
    s = sampler or load(SamplerConfig, os.environ)
    rt = ServiceRuntime(config, load_migrations("sampler", package_migrations("strata.sampler")))
    metrics = SamplerMetrics(config.service, rt.metrics.registry)
    contracts = ContractCache(rt.db, load_contract)
    importer = Importer(
        rt.db,
        text_threshold=s.text_threshold,
        vector_threshold=s.vector_threshold,
        image_threshold=s.image_threshold,
        chunk_rows=s.import_chunk_rows,
        activity=rt.relay.give_way_to,
    )
    gateway = None
    if s.gateway_address:
        gateway = gateway_pb2_grpc.AnnotationGatewayStub(rt.channel(s.gateway_address))
    rt.set_directory(RemoteDirectory(gateway))
    servicer = SamplerServicer(rt.db, importer, contracts, metrics, s, rt.guard)
    rt.add_servicer(
        ServicerBinding(
            sampler_pb2_grpc.add_SamplerServicer_to_server, servicer, "strata.v1.Sampler"
        )
    )
    rt.add_consumer(SamplerHandlers(contracts, metrics).routes(), max_poll_records=1000)

    def sweep(stop) -> None:  # type: ignore[no-untyped-def]
        while not stop.wait(30.0):
            with rt.db.transaction() as conn:
                store.expire_leases(conn)

    rt.add_background("lease-sweep", sweep)
    return rt


if __name__ == "__main__":
    sys.exit(main_guard("sampler", build))
