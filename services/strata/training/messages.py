"""Training's stored rows as the protobuf messages events and RPCs carry (pure)."""

from __future__ import annotations

from strata.training.ledger_store import FlagRow
from strata.v1 import common_pb2


def profile_messages(profiles: dict[str, list[float]]) -> list[common_pb2.DepthProfile]:
    return [common_pb2.DepthProfile(class_label=c, entropy_by_group=v) for c, v in profiles.items()]


def flag_messages(flags: list[FlagRow]) -> list[common_pb2.MemorizationFlag]:
    return [
        common_pb2.MemorizationFlag(
            label_id=f.label_id,
            item_id=f.item_id,
            annotator_ids=f.annotator_ids,
            value=f.value,
            reason=f.reason,
            score=f.score,
        )
        for f in flags
    ]
