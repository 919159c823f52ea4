"""ListModels against a real inference service, real Postgres and real gRPC ports; the
models table is filled directly, so no model is trained or loaded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from strata.common.channels import with_metadata
from strata.inference import store
from strata.v1 import common_pb2, inference_pb2, inference_pb2_grpc

from .conftest import Infra
from .inference_support import CLASSES, inference_stack
from .test_inference import contract

Code = grpc.StatusCode


def model_row(project: str, version: str, **fields: object) -> store.ModelRow:
    base: dict[str, object] = {
        "project": project,
        "version": version,
        "family": "mlp",
        "artifact_uri": f"file:///nowhere/{version}.pt",
        "classes": CLASSES,
        "run_id": f"run-{version}",
        "metrics": None,
        "status": "loaded",
        "error": None,
        "calibrated": False,
        "temperature": 1.0,
        "ece_before": None,
        "ece_after": None,
        "n_gold": 0,
        "calibration_note": "",
        "gold_confidence": [],
        "gold_correct": [],
        "published_at": None,
        "recorded_at": None,
    }
    base.update(fields)
    return store.ModelRow(**base)  # type: ignore[arg-type]


def test_list_models_shows_every_version_newest_first_with_the_serving_one_marked(
    infra: Infra,
) -> None:
    project, other = (f"m{uuid.uuid4().hex[:8]}" for _ in range(2))
    published = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    metrics = common_pb2.ModelMetrics(accuracy=0.91, n_eval=40)
    rows = [
        model_row(
            project,
            "v1",
            metrics=metrics.SerializeToString(),
            calibrated=True,
            temperature=1.7,
            ece_before=0.2,
            ece_after=0.05,
            n_gold=4,
            gold_confidence=[0.9, 0.8, 0.7, 0.95],
            gold_correct=[True, True, False, True],
            published_at=published,
        ),
        model_row(project, "v2", status="failed", error="the artifact has classes [a, b]"),
        model_row(
            project,
            "v3",
            n_gold=2,
            gold_confidence=[0.6, 0.5],
            gold_correct=[True, False],
            ece_before=0.3,
            ece_after=0.3,
        ),
        model_row(other, "v1"),
    ]
    # The registry follows `serving` only at start: the rows name no real artifact.
    with inference_stack(infra, registry_poll_s=3600.0) as s:
        s.gateway.load_contract(contract(project))
        with s.inference.db.transaction() as conn:
            for age, row in zip((3, 2, 1, 0), rows, strict=True):
                assert store.record_model(conn, row)
                conn.execute(
                    "UPDATE models SET recorded_at = now() - make_interval(hours => %s) "
                    "WHERE project = %s AND version = %s",
                    (age, row.project, row.version),
                )
            # v3 served, then a rollback went back to v1.
            store.serve(conn, project, "v3")
            store.serve(conn, project, "v1")

        reviewer = inference_pb2_grpc.InferenceStub(
            with_metadata(
                s.channel,
                s.gateway.annotator(f"rev-{project}", common_pb2.ROLE_REVIEWER, project),
            )
        )
        got = reviewer.ListModels(inference_pb2.ListModelsRequest(project=project)).models
        assert [m.model_version for m in got] == ["v3", "v2", "v1"]
        assert [m.serving for m in got] == [False, False, True]
        v3, v2, v1 = got
        assert (v1.gold_accuracy, v1.n_gold) == (0.75, 4)
        assert (v3.gold_accuracy, v3.n_gold) == (0.5, 2)
        assert (v2.gold_accuracy, v2.n_gold) == (0.0, 0)
        assert v1.metrics == metrics and not v3.HasField("metrics")
        assert v1.calibrated and (v1.ece_before, v1.ece_after) == (0.2, 0.05)
        assert v1.published_at.ToDatetime(tzinfo=UTC) == published
        assert not v2.HasField("published_at")
        assert (v2.status, v2.error) == ("failed", "the artifact has classes [a, b]")
        assert (v1.status, v1.error, v1.run_id, v1.family) == ("loaded", "", "run-v1", "mlp")
        newest = v3.recorded_at.ToDatetime(tzinfo=UTC)
        assert newest - v1.recorded_at.ToDatetime(tzinfo=UTC) == timedelta(hours=2)

        # A project inference has never seen: nothing, not an error.
        unknown = inference_pb2.ListModelsRequest(project=f"none{uuid.uuid4().hex[:6]}")
        assert list(s.admin.ListModels(unknown).models) == []

        annotator = s.gateway.annotator(f"ann-{project}", project=project)
        for request, metadata, code in (
            (inference_pb2.ListModelsRequest(project=project), annotator, Code.PERMISSION_DENIED),
            (inference_pb2.ListModelsRequest(), s.gateway.admin, Code.INVALID_ARGUMENT),
        ):
            with pytest.raises(grpc.RpcError) as err:
                s.stub.ListModels(request, metadata=metadata)
            assert err.value.code() == code
