"""What training did with each label, as quality's export asks it: the influence depth
of each item in the newest run that trained on it (training's `ItemDepths`)."""

from __future__ import annotations

import logging
import time

import grpc

from strata.v1 import training_pb2, training_pb2_grpc

log = logging.getLogger(__name__)


class TrainedDepths:
    """`depths(project, item_ids)` -> item -> (influence depth, model version). When
    training cannot answer, the export goes on without depths (logged, at most once a
    minute): a dataset must be able to leave while training is down."""

    def __init__(self, stub: training_pb2_grpc.TrainingStub, timeout_s: float = 15.0) -> None:
        self.stub = stub
        self.timeout_s = timeout_s
        self._warned_at = 0.0

    def __call__(self, project: str, item_ids: list[str]) -> dict[str, tuple[int, str]]:
        try:
            reply = self.stub.ItemDepths(
                training_pb2.ItemDepthsRequest(project=project, item_ids=item_ids),
                timeout=self.timeout_s,
            )
        except grpc.RpcError as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning(
                    "export of %s: training did not say how deep labels reached (%s: %s); "
                    "rows go out without influence_depth",
                    project,
                    exc.code().name,
                    exc.details(),
                )
            return {}
        return {d.item_id: (d.influence_depth, d.model_version) for d in reply.depths}
