"""The training service against real Postgres, the real broker, real gRPC ports and real Ray."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from strata.common.events import make_event
from strata.common.topics import (
    DEADLETTER,
    LABELS_CONSENSUS,
    MODELS_PUBLISHED,
    TRAINING_FEEDBACK,
    TRAINING_REQUESTED,
)
from strata.models import artifact
from strata.sampler.handlers import propagated_copy
from strata.v1 import common_pb2, events_pb2, training_pb2

from ..marks import ONE_RAY_AT_A_TIME
from .conftest import Infra, produce, read_topic, wait_until
from .inference_support import digits, features, item_events
from .test_inference import contract
from .training_support import consensus_events, training_stack, wait_run

pytestmark = ONE_RAY_AT_A_TIME

Code = grpc.StatusCode


def labels_stored(rt, project: str) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as conn:
        row = conn.execute("SELECT count(*) FROM labels WHERE project = %s", (project,)).fetchone()
    return int(row[0])


def contracts_stored(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as conn:
        row = conn.execute("SELECT count(*) FROM contracts").fetchone()
    return int(row[0])


def runs_of(rt, project: str) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE project = %s", (project,)).fetchone()
    return int(row[0])


def test_requested_run_trains_on_two_ray_workers_and_publishes_a_governed_model(
    infra: Infra, tmp_path: Path
) -> None:
    x, y = digits()
    project = f"t{uuid.uuid4().hex[:8]}"
    n = 600
    rng = np.random.default_rng(0)
    # Most labels are trusted; 15% borderline (depth 2), 15% doubtful (head only).
    tier = rng.choice(["high", "mid", "low"], size=n, p=[0.7, 0.15, 0.15])
    scores = np.where(tier == "high", 0.97, np.where(tier == "mid", 0.8, 0.5))
    people = [[f"{t}-{i % 3}", f"{t}-{(i + 1) % 3}"] for i, t in enumerate(tier)]
    values = [str(v) for v in y[:n]]
    twin = int(np.flatnonzero(tier == "high")[0])  # a trusted-looking label, flipped
    values[twin] = str((y[twin] + 5) % 10)
    # Duplicates of a borderline (0.8) and a doubtful (0.5) item, labelled the way the
    # sampler labels them (its own propagated_copy): they must train as their originals.
    originals = [int(np.flatnonzero(tier == t)[0]) for t in ("mid", "low")]
    labels = consensus_events(
        project, [f"{project}-p-{i}" for i in range(n)], values, scores, people
    )
    dup = {i: f"{project}-dup-{k}" for k, i in enumerate(originals)}
    copies = [
        make_event(
            LABELS_CONSENSUS,
            dup[i],
            events_pb2.ConsensusUpdated(
                routing=common_pb2.RoutingMetadata(project=project, source_service="sampler"),
                consensus=propagated_copy(
                    events_pb2.ConsensusUpdated.FromString(labels[i].payload).consensus,
                    dup[i],
                    project,
                ),
            ),
        )
        for i in originals
    ]
    with training_stack(infra, tmp_path, num_workers=2, epochs=15) as s:
        # The default rules; borderline labels reach group 2 at half strength (magnitude).
        rules = (
            "{rules: [{source: expert, depth: all}, {min_consensus_score: 0.9, depth: all}, "
            "{min_consensus_score: 0.7, depth: 2, scale: [1, 0.5]}, {depth: 1}]}"
        )
        s.gateway.load_contract(contract(project, governance=rules))
        produce(infra.bootstrap, item_events(project, x[:n], f"{project}-p-"))
        produce(infra.bootstrap, item_events(project, x[originals], f"{project}-dup-"))
        produce(infra.bootstrap, item_events(project, x[1500:1650], f"{project}-g-", y[1500:1650]))
        produce(infra.bootstrap, [*labels, *copies])
        n_labels = n + len(copies)
        wait_until(lambda: labels_stored(s.training, project) == n_labels, 60, "labels stored")
        request = events_pb2.TrainingRequested(
            project=project, consensus_labels=n_labels, trigger="retrain_every"
        )
        produce(infra.bootstrap, [make_event(TRAINING_REQUESTED, project, request)])

        published = read_topic(
            infra.bootstrap, MODELS_PUBLISHED, lambda m: m.project == project, 1, 300
        )
        assert len(published) == 1
        model = published[0]
        run = wait_run(s.stub, s.gateway.admin, model.run_id)
        assert run.state == training_pb2.RUN_STATE_SUCCEEDED, run.error
        assert (run.model_version, run.num_workers, run.epoch, run.epochs) == ("v1", 2, 15, 15)
        assert run.progress == 1.0 and run.samples_seen >= 15 * (n - 1)
        assert run.samples_per_second > 0 and not run.resumed_from_checkpoint
        assert run.governance_mode == common_pb2.GOVERNANCE_MODE_RULES
        assert not run.HasField("trust_curve") and not model.HasField("trust_curve")
        assert run.metrics.accuracy > 0.85 and run.metrics.n_eval == 150

        # The artifact is what inference will load; calibration inputs are the gold logits.
        loaded = artifact.loads(artifact.read(model.artifact_uri))
        assert loaded.spec.family == "mlp" and list(model.classes) == loaded.spec.classes
        assert model.model_version == "v1" and model.metrics.accuracy == run.metrics.accuracy
        assert len(model.calibration_inputs) == 150
        gold_pred = [int(np.argmax(g.logits)) for g in model.calibration_inputs]
        gold_true = [int(g.gold_answer) for g in model.calibration_inputs]
        assert np.mean(np.equal(gold_pred, gold_true)) == pytest.approx(run.metrics.accuracy)

        # Feedback: depth profiles per class and layer group, the same the RPC serves.
        feedback = read_topic(
            infra.bootstrap, TRAINING_FEEDBACK, lambda m: m.project == project, 1, 30
        )
        assert len(feedback) == 1 and list(feedback[0].layer_groups) == ["head", "hidden", "input"]
        assert {p.class_label for p in feedback[0].depth_profiles} == {str(d) for d in range(10)}
        assert all(
            len(p.entropy_by_group) == 3 and all(0 <= e <= 1 for e in p.entropy_by_group)
            for p in feedback[0].depth_profiles
        )
        reviewer = s.gateway.annotator("rev", common_pb2.ROLE_REVIEWER, project)
        profile = s.stub.DepthProfile(
            training_pb2.DepthProfileRequest(project=project), metadata=reviewer
        )
        assert profile.model_version == "v1"
        assert list(profile.profiles) == list(feedback[0].depth_profiles)
        assert list(profile.memorization_flags) == list(feedback[0].memorization_flags)

        # The ledger: doubtful labels shaped the head only, borderline ones two groups.
        def ledger(**query: object) -> list[training_pb2.LedgerEntry]:
            return list(
                s.stub.QueryLedger(
                    training_pb2.QueryLedgerRequest(project=project, limit=100_000, **query),  # type: ignore[arg-type]
                    metadata=reviewer,
                ).entries
            )

        low = ledger(annotator_id="low-0")
        assert low and {e.layer_group for e in low} == {1}
        assert all(e.influence_depth == 1 and e.consensus_score == 0.5 for e in low)
        mid = ledger(annotator_id="mid-1")
        assert {e.layer_group for e in mid} == {1, 2}
        assert {(e.layer_group, e.magnitude) for e in mid} == {(1, 1.0), (2, 0.5)}
        assert {e.magnitude for e in low} == {1.0}
        deep = ledger(layer_group=3)
        assert len(deep) == int((tier == "high").sum()) and all(e.influence > 0 for e in deep)
        assert {e.value for e in ledger(class_label="7")} == {"7"}
        everything = ledger()
        depth = {"high": 3, "mid": 2, "low": 1}
        assert len(everything) == sum(depth[t] for t in tier) + sum(
            depth[tier[i]] for i in originals
        )
        # A duplicate reaches exactly as deep as its original, on its votes' people.
        for i in originals:
            seen = {
                e.item_id: (e.influence_depth, e.consensus_score, tuple(e.annotator_ids))
                for e in everything
                if e.item_id in (f"{project}-p-{i}", dup[i])
            }
            assert len(seen) == 2, seen
            assert seen[dup[i]] == seen[f"{project}-p-{i}"]
            assert seen[dup[i]][0] == depth[tier[i]]

        # TracIn: the flipped twin of this item is among the labels opposing its prediction.
        # Any content can be traced by a manager only (a reviewer who labels gold could
        # otherwise read the model's answer on a gold item's content); gold never.
        request = training_pb2.TraceInfluenceRequest(
            project=project, content=features(x[twin] + 0.01), top_k=10
        )
        with pytest.raises(grpc.RpcError) as err:
            s.stub.TraceInfluence(request, metadata=reviewer)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        manager = s.gateway.annotator("mgr", common_pb2.ROLE_MANAGER, project)
        for gold in (
            training_pb2.TraceInfluenceRequest(project=project, content=features(x[1500])),
            training_pb2.TraceInfluenceRequest(project=project, item_id=f"{project}-g-0"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                s.stub.TraceInfluence(gold, metadata=manager)
            assert err.value.code() in (grpc.StatusCode.PERMISSION_DENIED, Code.NOT_FOUND)
        trace = s.stub.TraceInfluence(request, metadata=manager)
        assert trace.model_version == "v1" and trace.predicted_class == str(y[twin])
        assert f"{project}-p-{twin}" in [o.item_id for o in trace.opposing]
        assert all(len(o.by_group) == 3 for o in trace.opposing)
        assert trace.supporting and all(i.score > 0 for i in trace.supporting)

        registry = s.training.metrics.registry
        assert (
            registry.get_sample_value(
                f"strata_{s.training.config.service}_runs_total", {"outcome": "succeeded"}
            )
            == 1.0
        )
        assert registry.get_sample_value(
            f"strata_{s.training.config.service}_ledger_rows_total"
        ) == len(everything)


def test_bad_requests_are_refused_a_dead_worker_resumes_and_runs_queue(
    infra: Infra, tmp_path: Path
) -> None:
    x, y = digits()
    project, small, one_class, deep_policy, other = (f"b{uuid.uuid4().hex[:8]}" for _ in range(5))
    with training_stack(
        infra, tmp_path, fault_crash_at_epoch=2, max_failures=1, epochs=3, checkpoint_every_s=0.0
    ) as s:
        admin = s.gateway.admin
        annotator = s.gateway.annotator("ann", project=project)
        for p in (project, small, one_class, other):
            s.gateway.load_contract(contract(p))
        s.gateway.load_contract(contract(deep_policy, governance="{rules: [{depth: 5}]}"))
        wait_until(lambda: contracts_stored(s.training) >= 5, 30, "contracts received")

        def refused(
            request: training_pb2.StartRunRequest, metadata: object = admin
        ) -> grpc.RpcError:
            with pytest.raises(grpc.RpcError) as err:
                s.stub.StartRun(request, metadata=metadata)
            return err.value

        assert (
            refused(training_pb2.StartRunRequest(project=project), ()).code()
            == Code.UNAUTHENTICATED
        )
        err = refused(training_pb2.StartRunRequest(project=project), annotator)
        assert err.code() == Code.PERMISSION_DENIED and "manager" in (err.details() or "")
        err = refused(training_pb2.StartRunRequest(project="nobody"))
        assert err.code() == Code.NOT_FOUND and "contract" in (err.details() or "")
        # To a member of another project, it is as if the project did not exist.
        err = refused(training_pb2.StartRunRequest(project=other), annotator)
        assert err.code() == Code.NOT_FOUND
        err = refused(training_pb2.StartRunRequest(project=project, family="rnn"))
        assert err.code() == Code.INVALID_ARGUMENT and "mlp" in (err.details() or "")

        def label(p: str, ids: range, vals: list[str], score: float = 0.95) -> None:
            produce(
                infra.bootstrap,
                item_events(p, x[ids.start : ids.stop], f"{p}-"),
            )
            produce(
                infra.bootstrap,
                consensus_events(
                    p,
                    [f"{p}-{i}" for i in range(len(ids))],
                    vals,
                    [score] * len(ids),
                    [["a", "b"]] * len(ids),
                ),
            )

        label(small, range(0, 5), [str(v) for v in y[:5]])
        label(one_class, range(0, 30), ["3"] * 30)
        label(deep_policy, range(0, 40), [str(v) for v in y[:40]])
        label(project, range(0, 200), [str(v) for v in y[:200]])
        label(other, range(0, 60), [str(v) for v in y[:60]])
        # A consensus score outside [0, 1] is dead-lettered and counts for nothing.
        bad = consensus_events(project, [f"{project}-bad"], ["1"], [1.5], [["a"]])
        produce(infra.bootstrap, bad)
        for p, count in (
            (small, 5),
            (one_class, 30),
            (deep_policy, 40),
            (project, 200),
            (other, 60),
        ):
            wait_until(lambda p=p, count=count: labels_stored(s.training, p) == count, 60, p)

        err = refused(training_pb2.StartRunRequest(project=small))
        assert err.code() == Code.FAILED_PRECONDITION
        assert "5 accepted labels; a run needs at least 20" in (err.details() or "")
        err = refused(training_pb2.StartRunRequest(project=one_class))
        assert err.code() == Code.FAILED_PRECONDITION and "two classes" in (err.details() or "")
        err = refused(training_pb2.StartRunRequest(project=deep_policy))
        assert err.code() == Code.FAILED_PRECONDITION
        assert "depth 5" in (err.details() or "") and "3 layer groups" in (err.details() or "")
        assert runs_of(s.training, small) == runs_of(s.training, one_class) == 0
        assert runs_of(s.training, deep_policy) == 0

        with pytest.raises(grpc.RpcError) as get_err:
            s.stub.GetRun(training_pb2.GetRunRequest(run_id="42"), metadata=admin)
        assert get_err.value.code() == Code.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as get_err:
            s.stub.GetRun(training_pb2.GetRunRequest(run_id=str(uuid.uuid4())), metadata=admin)
        assert get_err.value.code() == Code.NOT_FOUND

        # Two runs of a project asked for at once: the second waits its turn. The first
        # loses a worker at epoch 2 and resumes from its epoch-1 checkpoint. Another
        # project's run trains beside it meanwhile (on a warm actor).
        first = s.stub.StartRun(
            training_pb2.StartRunRequest(project=project, num_workers=2), metadata=admin
        )
        second = s.stub.StartRun(
            training_pb2.StartRunRequest(project=project, num_workers=1, epochs=1),
            metadata=admin,
        )
        assert first.state == second.state == training_pb2.RUN_STATE_QUEUED
        assert second.runs_ahead == 1
        beside = s.stub.StartRun(
            training_pb2.StartRunRequest(project=other, num_workers=1, epochs=1), metadata=admin
        )
        a = wait_run(s.stub, s.gateway.admin, first.run_id)
        assert a.state == training_pb2.RUN_STATE_SUCCEEDED, a.error
        assert a.resumed_from_checkpoint and a.epoch == 3 and a.model_version == "v1"
        b = wait_run(s.stub, s.gateway.admin, second.run_id)
        assert b.state == training_pb2.RUN_STATE_SUCCEEDED, b.error
        assert not b.resumed_from_checkpoint and b.model_version == "v2"
        assert b.started_at.ToDatetime() >= a.finished_at.ToDatetime()
        c = wait_run(s.stub, s.gateway.admin, beside.run_id)
        assert c.state == training_pb2.RUN_STATE_SUCCEEDED, c.error
        assert c.model_version == "v1" and c.started_at.ToDatetime() < a.finished_at.ToDatetime()

        dead = read_topic(
            infra.bootstrap,
            DEADLETTER,
            lambda m: f"{project}-bad" in m.reason,
            1,
            30,
        )
        assert dead and "not in [0, 1]" in dead[0].reason
        assert labels_stored(s.training, project) == 200
