"""ListRuns and ItemLineage against real Postgres and real gRPC ports. Runs, models and
ledger rows are written directly, and the service here is its gRPC side alone (no run
executor), so no Ray starts and nothing trains."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from strata.common.access import RemoteDirectory
from strata.common.channels import with_metadata
from strata.common.contracts import ContractCache
from strata.common.db import load_migrations, package_migrations
from strata.common.grpcserver import ServicerBinding
from strata.common.service import ServiceRuntime
from strata.training import ledger_store, store
from strata.training.config import TrainingConfig
from strata.training.server import TrainingServicer
from strata.v1 import common_pb2, gateway_pb2_grpc, training_pb2, training_pb2_grpc

from .conftest import Infra, service_config
from .gateway_support import Gateway
from .quality_support import with_gateway
from .test_inference import contract

Code = grpc.StatusCode
GROUPS = ["head", "hidden", "input"]
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@contextmanager
def training_rpcs(infra: Infra) -> Iterator[tuple[Gateway, ServiceRuntime, grpc.Channel]]:
    """A real gateway (contracts, tokens) and training's gRPC servicer on real ports."""

    def make(gateway_address: str) -> ServiceRuntime:
        rt = ServiceRuntime(
            service_config(infra, "training"),
            load_migrations("training", package_migrations("strata.training")),
        )
        gateway = gateway_pb2_grpc.AnnotationGatewayStub(rt.channel(gateway_address))
        rt.set_directory(RemoteDirectory(gateway))
        servicer = TrainingServicer(
            rt.db,
            ContractCache(rt.db, store.load_contract),
            rt.guard,
            TrainingConfig(gateway_address=gateway_address),
        )
        rt.add_servicer(
            ServicerBinding(
                training_pb2_grpc.add_TrainingServicer_to_server, servicer, "strata.v1.Training"
            )
        )
        return rt

    with with_gateway(infra, make) as stack:
        yield stack


def add_run(
    conn: store.Conn,
    project: str,
    requested_hours_ago: int,
    state: str,
    reason: str,
    n_labels: int = 0,
    version: str = "",
    error: str = "",
) -> str:
    """A run as the executor leaves it; a succeeded one with its model version."""
    run_id = store.create_run(conn, project, "mlp", 1, 10, reason)
    requested = NOW - timedelta(hours=requested_hours_ago)
    ended = state in ("succeeded", "failed")
    conn.execute(
        "UPDATE runs SET state = %s, requested_at = %s, started_at = %s, finished_at = %s, "
        "n_labels = %s, epoch = %s, error = %s WHERE run_id = %s",
        (
            state,
            requested,
            requested + timedelta(minutes=1) if ended else None,
            requested + timedelta(minutes=5) if ended else None,
            n_labels,
            10 if ended else 0,
            error or None,
            run_id,
        ),
    )
    if version:
        metrics = common_pb2.ModelMetrics(accuracy=0.8, n_eval=20).SerializeToString()
        seq = ledger_store.next_model_seq(conn, project)
        ledger_store.record_model(
            conn,
            ledger_store.ModelRow(
                project, version, run_id, seq, "mlp", ["a", "b"], GROUPS, "file:///x", metrics
            ),
        )
        store.succeed_run(conn, run_id, version, metrics)
        conn.execute(
            "UPDATE runs SET finished_at = %s WHERE run_id = %s",
            (requested + timedelta(minutes=5), run_id),
        )
    return run_id


def ledger(
    label_id: str, item_id: str, influences: list[float], annotators: list[str]
) -> list[ledger_store.LedgerRow]:
    """A label's ledger rows, one per group it reached, in no particular order."""
    rows = [
        ledger_store.LedgerRow(label_id, item_id, g, v, len(influences), "a", 0.9, annotators)
        for g, v in enumerate(influences, start=1)
    ]
    random.Random(label_id).shuffle(rows)
    return rows


def test_list_runs_and_item_lineage_show_a_projects_history_newest_first(infra: Infra) -> None:
    project, other = (f"t{uuid.uuid4().hex[:8]}" for _ in range(2))
    with training_rpcs(infra) as (gw, rt, channel):
        gw.load_contract(contract(project))
        with rt.db.transaction() as conn:
            first = add_run(conn, project, 5, "succeeded", "StartRun", 30, "v1")
            failed = add_run(conn, project, 4, "failed", "retrain_every", 40, error="boom")
            second = add_run(conn, project, 3, "succeeded", "retrain_every", 50, "v2")
            queued = add_run(conn, project, 1, "queued", "StartRun")
            elsewhere = add_run(conn, other, 0, "succeeded", "StartRun", 60, "v1")
            ledger_store.write_ledger(conn, first, ledger("L1", "x-1", [0.5, 0.25], ["ann-a"]))
            ledger_store.write_ledger(
                conn,
                second,
                ledger("L3", "x-1", [0.9, 0.4, 0.1], ["ann-a", "ann-b"])
                + ledger("L4", "x-2", [0.7], ["ann-c"]),
            )
            # Another project's run never shows, whatever its item ids.
            ledger_store.write_ledger(conn, elsewhere, ledger("L9", "x-1", [0.3], ["ann-z"]))

        reviewer = training_pb2_grpc.TrainingStub(
            with_metadata(
                channel, gw.annotator(f"rev-{project}", common_pb2.ROLE_REVIEWER, project)
            )
        )
        runs = reviewer.ListRuns(training_pb2.ListRunsRequest(project=project)).runs
        assert [r.run.run_id for r in runs] == [queued, second, failed, first]
        assert [r.n_labels for r in runs] == [0, 50, 40, 30]
        assert [r.reason for r in runs] == [
            "StartRun",
            "retrain_every",
            "retrain_every",
            "StartRun",
        ]
        assert [r.run.state for r in runs] == [
            training_pb2.RUN_STATE_QUEUED,
            training_pb2.RUN_STATE_SUCCEEDED,
            training_pb2.RUN_STATE_FAILED,
            training_pb2.RUN_STATE_SUCCEEDED,
        ]
        for summary in runs:  # the same Run as GetRun's
            got = reviewer.GetRun(training_pb2.GetRunRequest(run_id=summary.run.run_id)).run
            assert summary.run == got
        assert runs[1].run.model_version == "v2" and runs[1].run.metrics.accuracy == 0.8
        assert runs[2].run.error == "boom" and runs[2].run.progress == 1.0
        limited = reviewer.ListRuns(training_pb2.ListRunsRequest(project=project, limit=2))
        assert [r.run.run_id for r in limited.runs] == [queued, second]

        traces = reviewer.ItemLineage(
            training_pb2.ItemLineageRequest(project=project, item_id="x-1")
        ).runs
        assert [(t.run_id, t.model_version, t.label_id) for t in traces] == [
            (second, "v2", "L3"),
            (first, "v1", "L1"),
        ]
        newest, oldest = traces
        assert list(newest.influence_by_group) == pytest.approx([0.9, 0.4, 0.1])
        # Group 3 was beyond the label's reach: the ledger has no row, its influence is 0.
        assert list(oldest.influence_by_group) == pytest.approx([0.5, 0.25, 0.0])
        assert (newest.influence_depth, oldest.influence_depth) == (3, 2)
        assert list(newest.layer_groups) == list(oldest.layer_groups) == GROUPS
        assert list(newest.annotator_ids) == ["ann-a", "ann-b"]
        assert (newest.value, newest.consensus_score) == ("a", 0.9)
        finished = NOW - timedelta(hours=3) + timedelta(minutes=5)
        assert newest.finished_at.ToDatetime(tzinfo=UTC) == finished

        def lineage(item_id: str) -> list[training_pb2.RunTrace]:
            request = training_pb2.ItemLineageRequest(project=project, item_id=item_id)
            return list(reviewer.ItemLineage(request).runs)

        assert lineage("never-labelled") == []
        assert [t.label_id for t in lineage("x-2")] == ["L4"]

        # Many items at once, as quality's export asks: the newest succeeded run's depth.
        depths = reviewer.ItemDepths(
            training_pb2.ItemDepthsRequest(project=project, item_ids=["x-1", "x-2", "nope"])
        ).depths
        assert sorted(
            (d.item_id, d.run_id, d.model_version, d.influence_depth) for d in depths
        ) == [
            ("x-1", second, "v2", 3),
            ("x-2", second, "v2", 1),
        ]

        annotator = gw.annotator(f"ann-{project}", project=project)
        stub = training_pb2_grpc.TrainingStub(channel)
        refused = [
            (stub.ListRuns, training_pb2.ListRunsRequest(project=project), annotator),
            (
                stub.ItemLineage,
                training_pb2.ItemLineageRequest(project=project, item_id="x-1"),
                annotator,
            ),
        ]
        for rpc, request, metadata in refused:
            with pytest.raises(grpc.RpcError) as err:
                rpc(request, metadata=metadata)  # type: ignore[operator]
            assert err.value.code() == Code.PERMISSION_DENIED
        invalid = [
            (stub.ListRuns, training_pb2.ListRunsRequest()),
            (stub.ListRuns, training_pb2.ListRunsRequest(project=project, limit=1001)),
            (stub.ListRuns, training_pb2.ListRunsRequest(project=project, limit=-1)),
            (stub.ItemLineage, training_pb2.ItemLineageRequest(item_id="x-1")),
            (stub.ItemLineage, training_pb2.ItemLineageRequest(project=project)),
            (stub.ItemDepths, training_pb2.ItemDepthsRequest(item_ids=["x-1"])),
            (
                stub.ItemDepths,
                training_pb2.ItemDepthsRequest(project=project, item_ids=["x"] * 5001),
            ),
        ]
        for rpc, request in invalid:
            with pytest.raises(grpc.RpcError) as err:
                rpc(request, metadata=gw.admin)  # type: ignore[operator]
            assert err.value.code() == Code.INVALID_ARGUMENT, request
