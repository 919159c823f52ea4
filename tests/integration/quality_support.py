"""Helpers for quality tests: a real quality service, a real gateway for tokens, label events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from strata.common.events import OutgoingEvent, make_event
from strata.common.service import ServiceRuntime
from strata.common.topics import LABELS_SUBMITTED
from strata.quality.__main__ import build
from strata.quality.config import QualityConfig
from strata.v1 import common_pb2, events_pb2, quality_pb2_grpc

from tests.pki import client_channel

from .conftest import Infra, service_config
from .gateway_support import Gateway, gateway_settings, scripted_sampler, start_gateway


@dataclass
class Stack:
    gateway: Gateway
    quality: ServiceRuntime
    channel: grpc.Channel
    stub: quality_pb2_grpc.QualityStub


@contextmanager
def with_gateway(
    infra: Infra, build_service: Callable[[str], ServiceRuntime]
) -> Iterator[tuple[Gateway, ServiceRuntime, grpc.Channel]]:
    """A real gateway (contracts, tokens) and the service `build_service(gateway address)`
    makes, both started on real ports; a channel to the service."""
    with scripted_sampler() as (_, sampler_address):
        gw = start_gateway(service_config(infra, "gateway"), gateway_settings(sampler_address))
        rt = build_service(f"127.0.0.1:{gw.runtime.endpoints.grpc_port}")  # type: ignore[union-attr]
        endpoints = rt.start()
        channel = client_channel(f"127.0.0.1:{endpoints.grpc_port}")
        try:
            yield gw, rt, channel
        finally:
            channel.close()
            rt.stop(grace_s=1.0)
            gw.channel.close()
            gw.runtime.stop(grace_s=1.0)


@contextmanager
def quality_stack(infra: Infra, **quality: object) -> Iterator[Stack]:
    """A real gateway (contracts, tokens) and a real quality service on real ports."""

    def make(gateway_address: str) -> ServiceRuntime:
        settings: dict[str, object] = {
            "gateway_address": gateway_address,
            "estimate_interval_s": 3600.0,
            "label_error_interval_s": 3600.0,
            "auth_cache_s": 0.0,
            # Old events of other tests name contracts this instance never sees: short wait.
            "contract_wait_s": 3.0,
        }
        settings.update(quality)
        return build(service_config(infra, "quality"), QualityConfig(**settings))  # type: ignore[arg-type]

    with with_gateway(infra, make) as (gw, rt, channel):
        yield Stack(gw, rt, channel, quality_pb2_grpc.QualityStub(channel))


def label_event(
    project: str,
    item_id: str,
    annotator_id: str,
    value: str,
    *,
    version: str = "v1",
    gold_answer: str = "",
    source: int = common_pb2.LABEL_SOURCE_HUMAN,
    label_id: str | None = None,
    duration_ms: int = 1500,
    revision: int = 0,
    active_ms: int = 0,
    prelabel: common_pb2.PreLabel | None = None,
) -> OutgoingEvent:
    """A `labels.submitted` event as the gateway publishes it (revision n: the label's
    n-th change, with the same label id)."""
    msg = events_pb2.LabelSubmitted(
        routing=common_pb2.RoutingMetadata(
            project=project, ontology_version=version, source_service="gateway"
        ),
        label=common_pb2.Label(
            label_id=label_id or uuid.uuid4().hex,
            task_id=uuid.uuid4().hex,
            item_id=item_id,
            annotator_id=annotator_id,
            value=value,
            ontology_version=version,
            duration_ms=duration_ms,
            active_ms=active_ms,
            source=source,  # type: ignore[arg-type]
            project=project,
            shown_prelabel=prelabel,
        ),
        gold=bool(gold_answer),
        gold_answer=gold_answer,
        revision=revision,
    )
    msg.label.submitted_at.GetCurrentTime()
    return make_event(LABELS_SUBMITTED, item_id, msg)


def quality_contract(project: str, **sections: str) -> str:
    base = {
        "overlap": "{min: 3, max: 5}",
        "consensus_threshold": "0.9",
        "gold": "{rate: 0.1, accuracy_threshold: 0.8}",
        "agreement": "{metric: krippendorff_alpha, threshold: 0.5}",
    }
    base.update(sections)
    lines = [f"project: {project}", "version: 'v1'", "classes: [cat, dog, bird]"]
    lines += [f"{k}: {v}" for k, v in base.items()]
    return "\n".join(lines) + "\n"
