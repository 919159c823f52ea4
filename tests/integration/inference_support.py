"""Helpers for inference tests: models the test trains itself, item and model events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import torch
from sklearn.datasets import load_digits
from strata.common.channels import with_metadata
from strata.common.events import OutgoingEvent, make_event
from strata.common.service import ServiceRuntime
from strata.common.topics import ITEMS_IMPORTED, MODELS_PUBLISHED
from strata.inference.__main__ import build
from strata.inference.config import InferenceConfig
from strata.models import artifact
from strata.models.families import ModelSpec
from strata.models.families import build as build_model
from strata.v1 import common_pb2, events_pb2, inference_pb2_grpc

from .conftest import Infra
from .gateway_support import Gateway
from .quality_support import service_config, with_gateway

CLASSES = [str(d) for d in range(10)]


def digits() -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


def train_digits(x: np.ndarray, y: np.ndarray, steps: int = 150, seed: int = 0) -> bytes:  # type: ignore[type-arg]
    """An artifact of the digits MLP trained full-batch for `steps` (0: random weights)."""
    spec = ModelSpec("mlp", CLASSES, input_dim=64)
    torch.manual_seed(seed)
    model = build_model(spec)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    return artifact.dumps(spec, model, {"steps": steps})


def features(row: np.ndarray) -> common_pb2.ItemContent:  # type: ignore[type-arg]
    return common_pb2.ItemContent(features=common_pb2.FeatureVector(values=row.tolist()))


def item_events(
    project: str,
    x: np.ndarray,
    prefix: str,
    answers: np.ndarray | None = None,  # type: ignore[type-arg]
    external: str = "",
) -> list[OutgoingEvent]:
    """An `items.imported` event as the sampler publishes it, all the items in one
    message (gold when answers are given; with external ids `{external}{i}` when
    `external` is given)."""
    out = []
    for i, row in enumerate(x):
        msg = events_pb2.ItemImported(
            routing=common_pb2.RoutingMetadata(project=project, source_service="sampler"),
            item=common_pb2.Item(
                item_id=f"{prefix}{i}",
                project=project,
                content=features(row),
                external_id=f"{external}{i}" if external else "",
            ),
            gold_answer=str(answers[i]) if answers is not None else "",
        )
        out.append(msg)
    return [make_event(ITEMS_IMPORTED, out[0].item.item_id, events_pb2.ItemsImported(items=out))]


def model_event(
    project: str, version: str, uri: str, classes: list[str] | None = None
) -> OutgoingEvent:
    msg = events_pb2.ModelPublished(
        project=project,
        model_version=version,
        artifact_uri=uri,
        family="mlp",
        classes=CLASSES if classes is None else classes,
        metrics=common_pb2.ModelMetrics(accuracy=0.9, n_eval=100),
    )
    msg.published_at.GetCurrentTime()
    return make_event(MODELS_PUBLISHED, project, msg)


def save_artifact(folder: Path, name: str, raw: bytes) -> str:
    uri = f"file://{folder}/{name}.pt"
    artifact.write(uri, raw)
    return uri


@dataclass
class Stack:
    gateway: Gateway
    inference: ServiceRuntime
    channel: grpc.Channel
    stub: inference_pb2_grpc.InferenceStub

    @property
    def admin(self) -> inference_pb2_grpc.InferenceStub:
        """The stub, signed in as the gateway's bootstrap admin."""
        return inference_pb2_grpc.InferenceStub(with_metadata(self.channel, self.gateway.admin))


@contextmanager
def inference_stack(infra: Infra, **settings: object) -> Iterator[Stack]:
    """A real gateway (contracts, tokens) and a real inference service on real ports."""

    def make(gateway_address: str) -> ServiceRuntime:
        base: dict[str, object] = {
            "gateway_address": gateway_address,
            "registry_poll_s": 0.1,
            "score_batch": 256,
        }
        base.update(settings)
        return build(service_config(infra, "inference"), InferenceConfig(**base))  # type: ignore[arg-type]

    with with_gateway(infra, make) as (gw, rt, channel):
        yield Stack(gw, rt, channel, inference_pb2_grpc.InferenceStub(channel))
