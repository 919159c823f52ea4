"""Inference against real Postgres, the real broker, real gRPC ports and models the test trains."""

from __future__ import annotations

import argparse
import json
import os
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from strata.cli.import_predictions import cmd_import_predictions
from strata.cli.stack import StackConfig
from strata.common.events import make_event
from strata.common.topics import DEADLETTER, ITEMS_IMPORTED, PREDICTIONS
from strata.v1 import common_pb2, events_pb2, gateway_pb2, inference_pb2

from tests import pki

from .conftest import Infra, produce, read_topic, wait_until
from .gateway_support import contract_doc
from .inference_support import (
    digits,
    features,
    inference_stack,
    item_events,
    model_event,
    save_artifact,
    train_digits,
)

Code = grpc.StatusCode


def served_version(stub, project: str) -> str:  # type: ignore[no-untyped-def]
    try:
        return stub.ModelInfo(inference_pb2.ModelInfoRequest(project=project)).model_version
    except grpc.RpcError:
        return ""


def contract(project: str, **sections: str) -> str:
    return contract_doc(project, **sections).replace(
        "classes: [cat, dog, bird]", "classes: ['0','1','2','3','4','5','6','7','8','9']"
    )


def test_a_published_model_is_calibrated_scores_the_pool_and_answers_predict(
    infra: Infra, tmp_path: Path
) -> None:
    x, y = digits()
    project = f"i{uuid.uuid4().hex[:8]}"
    with inference_stack(infra) as s:
        s.gateway.load_contract(
            contract(
                project,
                auto_accept="{enabled: true, confidence_threshold: 0.9, "
                "min_precision: 0.8, spot_check_rate: 0.25}",
            )
        )
        # Before any model: Predict says what is missing.
        with pytest.raises(grpc.RpcError) as err:
            s.admin.Predict(
                inference_pb2.PredictRequest(project=project, contents=[features(x[0])])
            )
        assert err.value.code() == Code.FAILED_PRECONDITION
        assert "no model serves" in (err.value.details() or "")

        produce(infra.bootstrap, item_events(project, x[:300], "p-"))
        produce(infra.bootstrap, item_events(project, x[1500:1600], "g-", y[1500:1600]))
        uri = save_artifact(tmp_path, "m1", train_digits(x[300:1500], y[300:1500]))
        wait_until(lambda: _items_stored(s, project) == 400, 60, "items stored")
        produce(infra.bootstrap, [model_event(project, "m1", uri)])

        preds = read_topic(
            infra.bootstrap, PREDICTIONS, lambda m: m.prediction.project == project, 400, 60
        )
        by_item = {m.prediction.item_id: m.prediction for m in preds}
        # Gold is predicted too: a gold task must not be told apart by a missing pre-label.
        assert set(by_item) == {f"p-{i}" for i in range(300)} | {f"g-{i}" for i in range(100)}
        assert len(preds) == 400  # each once
        gold = [m.prediction for m in preds if m.prediction.item_id.startswith("g-")]
        preds = [m for m in preds if m.prediction.item_id.startswith("p-")]
        sample = by_item["p-0"]
        assert sample.model_version == "m1" and sample.calibrated
        assert len(sample.probabilities) == 10 and abs(sum(sample.probabilities) - 1) < 1e-4
        assert sample.confidence == pytest.approx(max(sample.probabilities), abs=1e-6)
        assert len(sample.embedding) == 64
        accuracy = np.mean([by_item[f"p-{i}"].predicted_class == str(y[i]) for i in range(300)])
        assert accuracy > 0.85

        info = s.admin.ModelInfo(inference_pb2.ModelInfoRequest(project=project))
        assert info.model_version == "m1" and info.family == "mlp"
        assert info.calibration.calibrated and info.calibration.n_gold == 100
        assert info.calibration.temperature > 0 and info.scoring_backlog == 0
        # Auto-accept: open on this model, confident items proposed, a share spot-checked.
        assert info.auto_accept.active, info.auto_accept.reason
        assert not [p for p in gold if p.auto_accept or p.spot_check]  # never auto-labelled
        auto = [p for p in preds if p.prediction.auto_accept]
        spot = [p for p in preds if p.prediction.spot_check]
        assert (
            auto
            and spot
            and not {p.prediction.item_id for p in auto} & {p.prediction.item_id for p in spot}
        )
        assert all(p.prediction.confidence >= 0.9 for p in auto + spot)
        # The batch's routing names the model; each prediction says whether it is proposed.
        assert all(p.routing.attributes["model_version"] == "m1" for p in preds)
        assert 0.05 < len(spot) / (len(auto) + len(spot)) < 0.5
        assert info.auto_accept.auto_accepted == len(auto)

        # Predict by id and by inline content, with MC-dropout samples.
        reply = s.admin.Predict(
            inference_pb2.PredictRequest(
                project=project,
                item_ids=["p-1", "p-2"],
                contents=[features(x[3])],
                include_embedding=True,
                mc_samples=5,
            )
        )
        assert reply.model_version == "m1" and len(reply.predictions) == 3
        assert [p.item_id for p in reply.predictions] == ["p-1", "p-2", ""]
        assert reply.predictions[0].probabilities == pytest.approx(
            list(by_item["p-1"].probabilities), abs=1e-6
        )
        assert len(reply.predictions[2].mc_samples) == 5 and reply.predictions[2].embedding

        # No person is served a prediction for a gold item: by id it is not in the project,
        # by content it is refused (and audited); annotators cannot ask at all.
        annotator = s.gateway.annotator(f"ann-{project}", project=project)
        for request, md, code in (
            (inference_pb2.PredictRequest(project=project, item_ids=["g-0"]), None, "NOT_FOUND"),
            (
                inference_pb2.PredictRequest(project=project, contents=[features(x[1500])]),
                None,
                "PERMISSION_DENIED",
            ),
            (
                inference_pb2.PredictRequest(project=project, contents=[features(x[0])]),
                annotator,
                "PERMISSION_DENIED",
            ),
        ):
            with pytest.raises(grpc.RpcError) as err:
                if md is None:
                    s.admin.Predict(request)
                else:
                    s.stub.Predict(request, metadata=md)
            assert err.value.code().name == code, err.value.details()

        # Bad input: clear codes and messages.
        bad = [
            (
                inference_pb2.PredictRequest(project=project, item_ids=["nope"]),
                Code.NOT_FOUND,
                "nope",
            ),
            (
                inference_pb2.PredictRequest(
                    project=project, contents=[common_pb2.ItemContent(text="a text")]
                ),
                Code.INVALID_ARGUMENT,
                "takes features",
            ),
            (
                inference_pb2.PredictRequest(project=project, contents=[features(x[0][:10])]),
                Code.INVALID_ARGUMENT,
                "64 feature values",
            ),
            (inference_pb2.PredictRequest(project=project), Code.INVALID_ARGUMENT, "item_ids"),
        ]
        for request, code, words in bad:
            with pytest.raises(grpc.RpcError) as err:
                s.admin.Predict(request)
            assert err.value.code() == code and words in (err.value.details() or "")

        # New items are scored as they arrive.
        produce(infra.bootstrap, item_events(project, x[1700:1710], "late-"))
        late = read_topic(
            infra.bootstrap,
            PREDICTIONS,
            lambda m: m.prediction.item_id.startswith("late-") and m.prediction.project == project,
            10,
        )
        assert len(late) == 10


def _items_stored(s, project: str) -> int:  # type: ignore[no-untyped-def]
    with s.inference.db.transaction() as conn:
        row = conn.execute("SELECT count(*) FROM items WHERE project = %s", (project,)).fetchone()
    return int(row[0])


def test_a_corrupt_artifact_leaves_the_old_version_serving_and_swaps_drop_no_request(
    infra: Infra, tmp_path: Path
) -> None:
    x, y = digits()
    project = f"i{uuid.uuid4().hex[:8]}"
    pool = f"{project}-p-"  # item ids are global: topics outlive each test
    with inference_stack(infra) as s:
        produce(infra.bootstrap, item_events(project, x[:200], pool))
        good = save_artifact(tmp_path, "m1", train_digits(x[300:1000], y[300:1000], steps=60))
        produce(infra.bootstrap, [model_event(project, "m1", good)])
        wait_until(lambda: served_version(s.admin, project) == "m1", 60, "m1 serving")

        corrupt = tmp_path / "m2.pt"
        corrupt.write_bytes(b"this is not a model")
        wrong_classes = save_artifact(tmp_path, "m3", train_digits(x[:50], y[:50], steps=1))
        produce(
            infra.bootstrap,
            [
                model_event(project, "m2", f"file://{corrupt}"),
                model_event(project, "m3", wrong_classes, classes=["a", "b"]),
                model_event(project, "m4", f"file://{tmp_path}/missing.pt"),
            ],
        )
        wait_until(
            lambda: (
                "m4"
                in s.admin.ModelInfo(inference_pb2.ModelInfoRequest(project=project)).last_failure
            ),
            60,
            "failures recorded",
        )
        info = s.admin.ModelInfo(inference_pb2.ModelInfoRequest(project=project))
        assert info.model_version == "m1" and "cannot read" in info.last_failure
        with s.inference.db.transaction() as conn:
            failed = dict(
                conn.execute(
                    "SELECT version, error FROM models WHERE project = %s AND status = 'failed'",
                    (project,),
                ).fetchall()
            )
        assert set(failed) == {"m2", "m3", "m4"}
        assert "not a loadable model artifact" in failed["m2"]
        assert "classes" in failed["m3"]

        # Concurrent Predict calls while new versions are swapped in: every call succeeds.
        results: list[str] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    reply = s.admin.Predict(
                        inference_pb2.PredictRequest(
                            project=project, contents=[features(x[i]) for i in range(4)]
                        ),
                        timeout=10,
                    )
                    assert len(reply.predictions) == 4
                    results.append(reply.model_version)
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            for version, steps in (("m5", 40), ("m6", 80)):
                uri = save_artifact(tmp_path, version, train_digits(x[:800], y[:800], steps=steps))
                produce(infra.bootstrap, [model_event(project, version, uri)])
                wait_until(lambda v=version: served_version(s.admin, project) == v, 60, version)
            # Each replica follows the serving table on its own poll: m6 arrives shortly.
            wait_until(lambda: "m6" in results[-20:], 30, "Predict answered by m6")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[:3]
        assert {"m1", "m6"} <= set(results) and set(results) <= {"m1", "m5", "m6"}

        # The new version re-scores the whole pool.
        rescored = read_topic(
            infra.bootstrap,
            PREDICTIONS,
            lambda m: m.prediction.project == project and m.prediction.model_version == "m6",
            200,
            60,
        )
        assert {m.prediction.item_id for m in rescored} == {f"{pool}{i}" for i in range(200)}

        # Rollback is for admins, and goes back to the version served before.
        with pytest.raises(grpc.RpcError) as err:
            s.stub.RollbackModel(inference_pb2.RollbackModelRequest(project=project))
        assert err.value.code() == Code.UNAUTHENTICATED
        annotator = s.gateway.annotator(f"ann-{project}", project=project)
        with pytest.raises(grpc.RpcError) as err:
            s.stub.RollbackModel(
                inference_pb2.RollbackModelRequest(project=project), metadata=annotator
            )
        assert err.value.code() == Code.PERMISSION_DENIED
        back = s.stub.RollbackModel(
            inference_pb2.RollbackModelRequest(project=project), metadata=s.gateway.admin
        )
        assert back.model_version == "m5"
        assert served_version(s.admin, project) == "m5"
        reply = s.admin.Predict(
            inference_pb2.PredictRequest(project=project, contents=[features(x[0])])
        )
        assert reply.model_version == "m5"


def test_poison_events_go_to_the_dead_letter_topic_and_the_stream_flows(
    infra: Infra, tmp_path: Path
) -> None:
    x, y = digits()
    project = f"i{uuid.uuid4().hex[:8]}"
    pool = f"{project}-p-"
    with inference_stack(infra) as s:
        nameless = events_pb2.ItemImported(
            item=common_pb2.Item(project=project, content=features(x[0]))
        )
        # A duplicate is never handed out, so never scored.
        copy = events_pb2.ItemImported(
            item=common_pb2.Item(
                item_id=f"{pool}copy",
                project=project,
                content=features(x[0]),
                canonical_item_id=f"{pool}0",
            )
        )
        (announced,) = item_events(project, x[:20], pool)
        chunk = events_pb2.ItemsImported.FromString(announced.payload)
        # The last item comes as this topic's payload was before chunks: one
        # ItemImported a message. It is read all the same.
        older = replace(
            make_event(ITEMS_IMPORTED, "x", events_pb2.ItemsImported()),
            payload=chunk.items[19].SerializeToString(),
            schema="strata.v1.ItemImported",
        )
        del chunk.items[19]
        produce(
            infra.bootstrap,
            [
                # The nameless item, the copy and the 19 good ones in one message: the
                # nameless one is dead-lettered alone, the copy skipped, the rest kept.
                # Keyed as the other project's item of the same id below is: both on
                # one partition, this one first.
                make_event(
                    ITEMS_IMPORTED,
                    f"{pool}0",
                    events_pb2.ItemsImported(items=[nameless, copy, *chunk.items]),
                ),
                older,
                # The same id under another project: not overwritten, dead-lettered.
                *item_events(f"{project}-other", x[:1], pool),
            ],
        )
        produce(infra.bootstrap, [model_event(project, "", "file:///nowhere.pt")])
        uri = save_artifact(tmp_path, "m1", train_digits(x[300:800], y[300:800], steps=40))
        produce(infra.bootstrap, [model_event(project, "m1", uri)])
        preds = read_topic(
            infra.bootstrap, PREDICTIONS, lambda m: m.prediction.project == project, 20, 60
        )
        assert len(preds) == 20
        assert f"{pool}copy" not in {p.prediction.item_id for p in preds}
        assert f"{pool}19" in {p.prediction.item_id for p in preds}  # the older payload
        assert _items_stored(s, project) == 20
        info = s.admin.ModelInfo(inference_pb2.ModelInfoRequest(project=project))
        # Calibration was impossible without gold: said so, raw confidence flagged.
        assert not info.calibration.calibrated and "need at least 30" in info.calibration.note
        assert not preds[0].prediction.calibrated
        dead = read_topic(
            infra.bootstrap,
            DEADLETTER,
            lambda m: (
                m.original_topic in (ITEMS_IMPORTED.name, "strata.models.published")
                and project.encode() in m.payload
            ),
            3,
            60,
        )
        reasons = " | ".join(m.reason for m in dead)
        assert "needs item_id" in reasons and "model_version" in reasons
        # Only the nameless item is dead-lettered, not the message that carried it.
        (letter,) = [m for m in dead if "needs item_id" in m.reason]
        (alone,) = events_pb2.ItemsImported.FromString(letter.payload).items
        assert alone == nameless
        assert f"already belongs to project '{project}'" in reasons


def test_a_version_just_published_answers_predict_before_the_replica_polls(
    infra: Infra, tmp_path: Path
) -> None:
    """ModelInfo reads the serving table; Predict on a replica that serves nothing yet
    follows that table once instead of refusing until its next poll."""
    x, y = digits()
    project = f"i{uuid.uuid4().hex[:8]}"
    with inference_stack(infra, registry_poll_s=3600.0) as s:
        s.gateway.load_contract(contract(project))
        uri = save_artifact(tmp_path, "m1", train_digits(x[:600], y[:600], steps=40))
        produce(infra.bootstrap, [model_event(project, "m1", uri)])
        wait_until(lambda: served_version(s.admin, project) == "m1", 60, "m1 recorded as serving")
        reply = s.admin.Predict(
            inference_pb2.PredictRequest(project=project, contents=[features(x[700])]),
            timeout=10,
        )
        assert reply.model_version == "m1" and len(reply.predictions) == 1


def _import_cli(s, home: Path, project: str, model: str, file: Path) -> int:  # type: ignore[no-untyped-def]
    """`strata import predictions` against this stack's inference, as its admin."""
    home.mkdir(exist_ok=True)
    token = home / "admin.token"
    token.write_text(s.gateway.admin_token)
    state = {
        "services": {"inference": {"grpc": f"127.0.0.1:{s.inference.endpoints.grpc_port}"}},
        "tls_dir": str(pki.folder()),
        "admin_token_file": str(token),
    }
    (home / "stack.json").write_text(json.dumps(state))
    args = argparse.Namespace(project=project, model=model, file=str(file), inference=None)
    return cmd_import_predictions(args, StackConfig(home=home))


def _imported(s, project: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with s.inference.db.transaction() as conn:
        rows = conn.execute(
            "SELECT item_id, predicted_class FROM imported_predictions WHERE project = %s",
            (project,),
        ).fetchall()
    return dict(rows)


def test_outside_predictions_are_imported_once_as_pre_labels_and_bad_lines_are_named(
    infra: Infra,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    x, y = digits()
    project = f"i{uuid.uuid4().hex[:8]}"
    pool = f"{project}-p-"
    model = "outside-resnet-v2"
    for name in [k for k in os.environ if k.startswith("STRATA_TLS_") or k == "STRATA_TOKEN"]:
        monkeypatch.delenv(name)
    with inference_stack(infra) as s:
        s.gateway.load_contract(contract(project))
        produce(infra.bootstrap, item_events(project, x[:6], pool, external="ext-"))

        def ready() -> bool:
            with s.inference.db.transaction() as conn:
                named = conn.execute(
                    "SELECT count(*) FROM items WHERE project = %s AND external_id IS NOT NULL",
                    (project,),
                ).fetchone()
                contract_rows = conn.execute(
                    "SELECT count(*) FROM contracts WHERE project = %s", (project,)
                ).fetchone()
            return bool(named and named[0] == 6 and contract_rows and contract_rows[0])

        wait_until(ready, 60, "items with external ids and the contract at inference")
        lines = [
            json.dumps({"item": "ext-0", "value": "3", "confidence": 0.91}),
            json.dumps({"item": "ext-1", "probabilities": {"7": 0.6, "1": 0.3}}),
            json.dumps({"item": f"{pool}2", "value": "2", "confidence": 0.5}),  # by item id
            "{this is not json",
            json.dumps({"item": "ext-404", "value": "3", "confidence": 0.5}),
            json.dumps({"item": "ext-3", "value": "cat", "confidence": 0.5}),
            json.dumps({"item": "ext-4", "value": "4", "confidence": 2.0}),
            json.dumps({"item": "ext-5", "value": "5", "confidence": 0.8}),
        ]
        file = tmp_path / "predictions.jsonl"
        file.write_text("\n".join(lines) + "\n")
        capsys.readouterr()
        assert _import_cli(s, tmp_path / "home", project, model, file) == 3
        out = capsys.readouterr().out
        assert "4 imported, 0 already imported, 4 rejected" in out, out
        assert "line 4: invalid JSON" in out
        assert f"line 5: no item with external id ext-404 in project {project}" in out
        assert "line 6: class 'cat' is not in the contract" in out
        assert "line 7: confidence 2.0 is outside [0, 1]" in out

        def imported_events() -> list:
            return read_topic(
                infra.bootstrap,
                PREDICTIONS,
                lambda m: m.prediction.project == project and m.prediction.model_version == model,
                4,
                30,
            )

        events = imported_events()
        by_item = {m.prediction.item_id: m for m in events}
        assert len(events) == 4 and set(by_item) == {f"{pool}{i}" for i in (0, 1, 2, 5)}
        # Nothing is stored for the bad lines.
        assert _imported(s, project) == {
            f"{pool}0": "3",
            f"{pool}1": "7",
            f"{pool}2": "2",
            f"{pool}5": "5",
        }
        for m in events:
            p = m.prediction
            assert not p.auto_accept and not p.spot_check and not p.calibrated
            assert m.routing.attributes["imported"] == "true"
            assert list(p.classes) == [str(d) for d in range(10)]
            assert sum(p.probabilities) == pytest.approx(1.0, abs=1e-5)
        first = by_item[f"{pool}0"].prediction
        assert first.predicted_class == "3" and first.confidence == pytest.approx(0.91)
        assert first.probabilities[3] == pytest.approx(0.91)
        assert first.probabilities[0] == pytest.approx(0.01, abs=1e-6)  # the rest, evenly
        second = by_item[f"{pool}1"].prediction
        assert (second.predicted_class, second.confidence) == ("7", pytest.approx(0.6))
        assert second.probabilities[1] == pytest.approx(0.3)
        assert second.probabilities[0] == pytest.approx(0.1 / 8)

        # The same file again changes nothing and publishes nothing.
        assert _import_cli(s, tmp_path / "home", project, model, file) == 3
        assert "0 imported, 4 already imported, 4 rejected" in capsys.readouterr().out
        assert len(imported_events()) == 4

        # The gRPC call itself: a non-member is told the project does not exist (and
        # the refusal is audited); an annotator of the project may not import.
        request = inference_pb2.ImportPredictionsRequest(
            project=project,
            model=model,
            rows=[inference_pb2.ImportedPrediction(line=1, item="ext-0", value="1", confidence=1)],
        )
        other = f"{project}-b"
        s.gateway.load_contract(contract(other))
        outsider = s.gateway.annotator(f"mgr-{other}", role=common_pb2.ROLE_MANAGER, project=other)
        annotator = s.gateway.annotator(f"ann-{project}", project=project)
        for md, code in ((outsider, Code.NOT_FOUND), (annotator, Code.PERMISSION_DENIED)):
            with pytest.raises(grpc.RpcError) as err:
                s.stub.ImportPredictions(iter([request]), metadata=md)
            assert err.value.code() == code, err.value.details()
        assert _imported(s, project)[f"{pool}0"] == "3"

        def refusal_audited() -> bool:
            entries = s.gateway.stub.ListAudit(
                gateway_pb2.ListAuditRequest(actor=f"mgr-{other}", outcome="refused"),
                metadata=s.gateway.admin,
            ).entries
            return any(
                e.rpc.endswith("/ImportPredictions") and e.code == "NOT_FOUND" for e in entries
            )

        wait_until(refusal_audited, 30, "the refusal in the audit log")

        # The serving model's own scoring comes later, so it is the newer pre-label; an
        # outside model may not take a name training published.
        uri = save_artifact(tmp_path, "m1", train_digits(x[300:800], y[300:800], steps=20))
        produce(infra.bootstrap, [model_event(project, "m1", uri)])
        scored = read_topic(
            infra.bootstrap,
            PREDICTIONS,
            lambda m: m.prediction.project == project and m.prediction.model_version == "m1",
            6,
            60,
        )
        assert {m.prediction.item_id for m in scored} == {f"{pool}{i}" for i in range(6)}
        newest_import = max(m.prediction.predicted_at.ToNanoseconds() for m in events)
        assert all(m.prediction.predicted_at.ToNanoseconds() > newest_import for m in scored)
        with pytest.raises(grpc.RpcError) as err:
            s.admin.ImportPredictions(
                iter([inference_pb2.ImportPredictionsRequest(project=project, model="m1")])
            )
        assert err.value.code() == Code.INVALID_ARGUMENT and "published" in (
            err.value.details() or ""
        )
