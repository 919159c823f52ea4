"""What gateway integration tests share: an item source, a started gateway, admin helpers.

`ScriptedSampler` is a real gRPC server on a real port (mutual TLS, with the
sampler's certificate) that serves the Sampler contract's NextBatch from a fixed,
ranked list: the gateway's tests need items in a known order. Its ranking is the
list order; each item is handed out once. It records who called it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from strata.common.config import ServiceConfig
from strata.common.events import OutgoingEvent, make_event
from strata.common.service import ServiceRuntime
from strata.common.tls import peer_of, server_credentials
from strata.common.topics import ITEMS_IMPORTED
from strata.gateway.__main__ import build
from strata.gateway.auth import new_token
from strata.gateway.config import GatewayConfig
from strata.v1 import (
    common_pb2,
    events_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    sampler_pb2,
    sampler_pb2_grpc,
)

from tests.pki import client_channel, service_tls


class ScriptedSampler(sampler_pb2_grpc.SamplerServicer):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[sampler_pb2.BatchItem]] = {}
        self.requests: list[sampler_pb2.NextBatchRequest] = []
        self.callers: set[str] = set()

    def add(self, project: str, items: Sequence[tuple[str, str]], reason: int = 1) -> None:
        """Queue (item_id, text) pairs for `project`, ranked in the order given."""
        with self._lock:
            queue = self._queues.setdefault(project, [])
            for rank, (item_id, text) in enumerate(items):
                queue.append(
                    sampler_pb2.BatchItem(
                        item=common_pb2.Item(
                            item_id=item_id,
                            project=project,
                            content=common_pb2.ItemContent(text=text),
                        ),
                        routing=common_pb2.RoutingMetadata(
                            trace_id=uuid.uuid4().hex,
                            source_service="sampler",
                            reason=reason,  # type: ignore[arg-type]
                            project=project,
                            score=1.0 / (rank + 1),
                        ),
                    )
                )

    def NextBatch(self, request, context):  # type: ignore[no-untyped-def]
        with self._lock:
            self.requests.append(request)
            self.callers.add(peer_of(context).name)
            queue = self._queues.get(request.project, [])
            batch, self._queues[request.project] = queue[: request.size], queue[request.size :]
            left = len(self._queues[request.project])
        return sampler_pb2.NextBatchResponse(items=batch, batch_id=uuid.uuid4().hex, pool_left=left)


@contextmanager
def scripted_sampler(
    tls: bool = True, servicer: ScriptedSampler | None = None
) -> Iterator[tuple[ScriptedSampler, str]]:
    servicer = servicer or ScriptedSampler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    sampler_pb2_grpc.add_SamplerServicer_to_server(servicer, server)
    if tls:
        port = server.add_secure_port("127.0.0.1:0", server_credentials(service_tls("sampler")))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def contract_doc(project: str, version: str = "v1", **sections: str) -> str:
    lines = [f"project: {project}", f"version: '{version}'", "classes: [cat, dog, bird]"]
    lines += [f"{k}: {v}" for k, v in sections.items()]
    return "\n".join(lines) + "\n"


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@dataclass
class Gateway:
    runtime: ServiceRuntime
    channel: grpc.Channel
    stub: gateway_pb2_grpc.AnnotationGatewayStub
    admin_token: str

    @property
    def admin(self) -> list[tuple[str, str]]:
        return bearer(self.admin_token)

    def load_contract(self, document: str) -> None:
        self.stub.LoadContract(
            gateway_pb2.LoadContractRequest(document=document), metadata=self.admin
        )

    def annotator(
        self, annotator_id: str, role: int = common_pb2.ROLE_ANNOTATOR, project: str = ""
    ) -> list[tuple[str, str]]:
        """Create a person (a member of `project` with `role`, or an admin) and return call
        metadata carrying a fresh token."""
        self.stub.CreateAnnotator(
            gateway_pb2.CreateAnnotatorRequest(
                annotator_id=annotator_id,
                role=role,  # type: ignore[arg-type]
                project="" if role == common_pb2.ROLE_ADMIN else project,
            ),
            metadata=self.admin,
        )
        reply = self.stub.IssueToken(
            gateway_pb2.IssueTokenRequest(annotator_id=annotator_id), metadata=self.admin
        )
        return bearer(reply.token)


def enroll(
    stub: gateway_pb2_grpc.AnnotationGatewayStub,
    admin: list[tuple[str, str]],
    ids: Sequence[str],
    project: str,
) -> list[str]:
    """Create annotators of `project` and issue each a token; returns the tokens in order."""
    tokens = []
    for annotator_id in ids:
        stub.CreateAnnotator(
            gateway_pb2.CreateAnnotatorRequest(
                annotator_id=annotator_id, role=common_pb2.ROLE_ANNOTATOR, project=project
            ),
            metadata=admin,
        )
        reply = stub.IssueToken(
            gateway_pb2.IssueTokenRequest(annotator_id=annotator_id), metadata=admin
        )
        tokens.append(reply.token)
    return tokens


def gold_events(project: str, n: int, answer: str) -> list[OutgoingEvent]:
    """`items.imported` events for `n` gold items, as the sampler publishes them."""
    out = []
    for i in range(n):
        msg = events_pb2.ItemImported(
            routing=common_pb2.RoutingMetadata(project=project, source_service="sampler"),
            item=common_pb2.Item(
                item_id=f"{project}-gold-{i}",
                project=project,
                content=common_pb2.ItemContent(text=f"gold text {i}"),
            ),
            gold_answer=answer,
        )
        out.append(
            make_event(ITEMS_IMPORTED, msg.item.item_id, events_pb2.ItemsImported(items=[msg]))
        )
    return out


def gateway_settings(sampler_address: str, **overrides: object) -> GatewayConfig:
    base: dict[str, object] = {
        "sampler_address": sampler_address,
        "admin_token": new_token(),
        "refill_interval_s": 0.1,
        "sweep_interval_s": 0.2,
        "retry_after_ms": 50,
        "refill_low_water": 20,
        "refill_batch": 20,
    }
    base.update(overrides)
    return GatewayConfig(**base)  # type: ignore[arg-type]


def start_gateway(config: ServiceConfig, settings: GatewayConfig) -> Gateway:
    runtime = build(config, settings)
    endpoints = runtime.start()
    channel = client_channel(f"127.0.0.1:{endpoints.grpc_port}")
    return Gateway(
        runtime, channel, gateway_pb2_grpc.AnnotationGatewayStub(channel), settings.admin_token
    )
