"""Helpers for training tests: a real training service (Ray, Postgres, broker, gRPC) and
the events it trains from."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from strata.common.events import OutgoingEvent, make_event
from strata.common.service import ServiceRuntime
from strata.common.topics import LABELS_CONSENSUS
from strata.training.__main__ import build
from strata.training.config import TrainingConfig
from strata.v1 import common_pb2, events_pb2, training_pb2, training_pb2_grpc

from .conftest import Infra, wait_until
from .gateway_support import Gateway
from .inference_support import CLASSES
from .quality_support import service_config, with_gateway

__all__ = ["CLASSES", "Stack", "consensus_events", "training_stack", "wait_run"]


@dataclass
class Stack:
    gateway: Gateway
    training: ServiceRuntime
    channel: grpc.Channel
    stub: training_pb2_grpc.TrainingStub


@contextmanager
def training_stack(infra: Infra, tmp_path: Path, **settings: object) -> Iterator[Stack]:
    """A real gateway (contracts, tokens) and a real training service on real ports;
    runs train on a local Ray instance."""

    def make(gateway_address: str) -> ServiceRuntime:
        base: dict[str, object] = {
            "gateway_address": gateway_address,
            "artifact_root": f"file://{tmp_path}/artifacts",
            "ray_storage": str(tmp_path / "ray"),
            "min_labels": 20,
            "poll_s": 0.1,
            "tracin_checkpoints": 3,
            "min_steps": 0,
        }
        base.update(settings)
        return build(service_config(infra, "training"), TrainingConfig(**base))  # type: ignore[arg-type]

    try:
        with with_gateway(infra, make) as (gw, rt, channel):
            yield Stack(gw, rt, channel, training_pb2_grpc.TrainingStub(channel))
    finally:
        import ray

        ray.shutdown()  # the service started it in this process


def consensus_events(
    project: str,
    item_ids: Sequence[str],
    values: Sequence[str],
    scores: Sequence[float],
    annotators: Sequence[Sequence[str]],
    status: int = common_pb2.CONSENSUS_STATUS_ACCEPTED,
    at: datetime | None = None,
) -> list[OutgoingEvent]:
    """`labels.consensus` events as quality publishes them."""
    decided = at or datetime.now(UTC) - timedelta(minutes=1)
    out = []
    for item_id, value, score, people in zip(item_ids, values, scores, annotators, strict=True):
        c = common_pb2.ConsensusLabel(
            item_id=item_id,
            value=value,
            consensus_score=score,
            votes=[
                common_pb2.Vote(
                    annotator_id=a,
                    value=value,
                    weight=1.0,
                    label_id=str(uuid.uuid4()),
                    source=common_pb2.LABEL_SOURCE_HUMAN,
                )
                for a in people
            ],
            method=common_pb2.CONSENSUS_METHOD_DAWID_SKENE,
            status=status,
            project=project,
            ontology_version="v1",
        )
        c.decided_at.FromDatetime(decided)
        msg = events_pb2.ConsensusUpdated(
            routing=common_pb2.RoutingMetadata(project=project, source_service="quality"),
            consensus=c,
        )
        out.append(make_event(LABELS_CONSENSUS, item_id, msg))
    return out


def wait_run(
    stub: training_pb2_grpc.TrainingStub,
    metadata: list[tuple[str, str]],
    run_id: str,
    timeout_s: float = 240.0,
) -> training_pb2.Run:
    """The run once it has ended (succeeded or failed)."""
    ended = (training_pb2.RUN_STATE_SUCCEEDED, training_pb2.RUN_STATE_FAILED)
    seen: list[training_pb2.Run] = []

    def done() -> bool:
        run = stub.GetRun(training_pb2.GetRunRequest(run_id=run_id), metadata=metadata).run
        seen.append(run)
        return run.state in ended

    wait_until(done, timeout_s, f"run {run_id} ended")
    return seen[-1]
