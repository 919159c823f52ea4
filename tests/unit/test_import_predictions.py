"""Reading files of outside predictions (JSONL, Label Studio) and inference's check of
each row against the contract: pure, no services."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from strata.cli.import_predictions import read_predictions
from strata.inference.imports import Checked, check, prediction
from strata.v1 import inference_pb2

CLASSES = ["cat", "dog", "bird"]


def read(path: Path, model: str = "") -> tuple[list[inference_pb2.ImportedPrediction], dict]:
    errors: list[tuple[int, str]] = []
    rows = list(read_predictions(path, errors, model))
    return rows, dict(errors)


def test_jsonl_rows_keep_their_line_numbers_and_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"item": "a-1", "value": "cat", "confidence": 0.9}),
                "{not json",
                "",
                json.dumps({"item": 17, "value": "dog", "confidence": 1}),
                json.dumps({"value": "dog", "confidence": 0.5}),
                json.dumps({"item": "a-3", "probabilities": {"cat": 0.2, "dog": 0.8}}),
                json.dumps({"item": "a-4", "value": "cat"}),
                json.dumps({"item": "a-5", "value": "cat", "confidence": "high"}),
                json.dumps(["a-6", "cat", 0.5]),
                json.dumps({"external_id": "a-7", "value": "bird", "confidence": 0.4}),
                json.dumps({"item": True, "value": "cat", "confidence": 0.5}),
            ]
        )
        + "\n"
    )
    rows, errors = read(path)
    assert [(r.line, r.item) for r in rows] == [(1, "a-1"), (4, "17"), (6, "a-3"), (10, "a-7")]
    first = rows[0]
    assert first.value == "cat" and first.HasField("confidence") and first.confidence == 0.9
    # Only probabilities: value and confidence are left to inference (the most probable).
    assert rows[2].value == "" and not rows[2].HasField("confidence")
    assert dict(rows[2].probabilities) == {"cat": 0.2, "dog": 0.8}
    assert sorted(errors) == [2, 5, 7, 8, 9, 11]
    assert errors[2].startswith("invalid JSON")
    assert "needs item" in errors[5]
    assert "needs confidence" in errors[7]
    assert "confidence must be a number" in errors[8]
    assert "JSON object" in errors[9]
    assert "item must be" in errors[11]


def studio_task(task_id: object, *predictions: dict, **data: object) -> dict:
    return {"id": task_id, "data": {"text": f"text {task_id}", **data}, "predictions": predictions}


def studio_prediction(model: str, choices: list[str], score: float | None = 0.8) -> dict:
    out: dict = {
        "model_version": model,
        "result": [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": choices},
            }
        ],
    }
    if score is not None:
        out["score"] = score
    return out


def test_label_studio_tasks_give_their_prediction_under_their_external_id(
    tmp_path: Path,
) -> None:
    tasks = [
        studio_task(1, studio_prediction("resnet", ["cat"], 0.91)),
        studio_task(2, studio_prediction("resnet", ["dog"]), external_id="shop-42"),
        studio_task(3),  # no prediction: nothing to import, no error
        studio_task(4, studio_prediction("resnet", ["cat", "dog"])),  # multilabel
        studio_task(5, studio_prediction("resnet", ["bird"], score=None)),
        studio_task(
            6, studio_prediction("old", ["cat"], 0.3), studio_prediction("resnet", ["dog"])
        ),
        studio_task(7, studio_prediction("a", ["cat"]), studio_prediction("b", ["dog"])),
        {"data": {"text": "no id"}, "predictions": [studio_prediction("resnet", ["cat"])]},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, indent=2))
    starts = [n for n, text in enumerate(path.read_text().splitlines(), start=1) if text == "  {"]
    rows, errors = read(path, model="resnet")
    assert [(r.item, r.value, round(r.confidence, 2)) for r in rows] == [
        ("1", "cat", 0.91),
        ("shop-42", "dog", 0.8),
        ("6", "dog", 0.8),  # of several, the one of the model named
    ]
    # Lines are where each task starts in the file.
    assert [r.line for r in rows] == [starts[0], starts[1], starts[5]]
    assert sorted(errors) == [starts[3], starts[4], starts[6], starts[7]]
    assert "2 choices" in errors[starts[3]]
    assert "no score" in errors[starts[4]]
    assert "model versions a, b" in errors[starts[6]]
    assert "external_id" in errors[starts[7]]


def test_a_result_score_stands_in_for_a_missing_prediction_score(tmp_path: Path) -> None:
    found = studio_prediction("m", ["bird"], score=None)
    found["result"][0]["score"] = 0.66
    path = tmp_path / "export.json"
    path.write_text(json.dumps([studio_task("t-9", found)]))
    rows, errors = read(path)
    assert not errors and rows[0].item == "t-9" and rows[0].confidence == pytest.approx(0.66)


def test_a_broken_label_studio_file_is_reported_at_the_line_it_breaks(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    good = json.dumps(studio_task(1, studio_prediction("m", ["cat"])))
    path.write_text(f"[\n{good},\n{{broken\n]\n")
    rows, errors = read(path)
    assert [r.item for r in rows] == ["1"]
    assert list(errors) == [3] and "invalid JSON" in errors[3]


def row(**fields: object) -> inference_pb2.ImportedPrediction:
    return inference_pb2.ImportedPrediction(line=1, item="x", **fields)  # type: ignore[arg-type]


def test_value_and_confidence_spread_the_rest_of_the_mass_evenly() -> None:
    got = check(row(value="dog", confidence=0.7), CLASSES)
    assert isinstance(got, Checked)
    assert got.value == "dog" and got.confidence == 0.7
    assert got.probabilities == pytest.approx([0.15, 0.7, 0.15])


def test_probabilities_fill_the_classes_not_named_and_give_value_and_confidence() -> None:
    got = check(row(probabilities={"cat": 0.6, "dog": 0.3}), CLASSES)
    assert isinstance(got, Checked)
    assert (got.value, got.confidence) == ("cat", 0.6)
    assert got.probabilities == pytest.approx([0.6, 0.3, 0.1])
    full = check(
        row(value="bird", confidence=0.5, probabilities={"bird": 0.5, "cat": 0.5}), CLASSES
    )
    assert isinstance(full, Checked) and full.probabilities == pytest.approx([0.5, 0.0, 0.5])


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"value": "horse", "confidence": 0.5}, "'horse' is not in the contract"),
        ({"value": "cat", "confidence": 2.0}, "confidence 2.0 is outside [0, 1]"),
        ({"value": "cat", "confidence": -0.1}, "outside [0, 1]"),
        ({"value": "cat", "confidence": math.nan}, "outside [0, 1]"),
        ({"value": "cat"}, "no confidence"),
        ({"confidence": 0.5}, "no value"),
        ({"probabilities": {"cat": 0.9, "dog": 0.9}}, "sum to 1.8"),
        ({"probabilities": {"cat": 0.5, "dog": 0.2, "bird": 0.1}}, "sum to 0.8"),
        ({"probabilities": {"zebra": 1.0}}, "'zebra' in probabilities"),
        ({"probabilities": {"cat": 1.5}}, "probability 1.5"),
    ],
)
def test_rows_the_contract_does_not_allow_say_why(fields: dict, words: str) -> None:
    got = check(row(**fields), CLASSES)
    assert isinstance(got, str) and words in got, got


def test_an_imported_prediction_is_uncalibrated_and_never_auto_accepted() -> None:
    checked = check(row(value="cat", confidence=0.8), CLASSES)
    assert isinstance(checked, Checked)
    p = prediction("proj", "outside-v1", "item-1", CLASSES, checked)
    assert p.model_version == "outside-v1" and p.predicted_class == "cat"
    assert not p.auto_accept and not p.spot_check and not p.calibrated
    assert list(p.classes) == CLASSES and sum(p.probabilities) == pytest.approx(1.0)
    assert p.margin == pytest.approx(0.7) and p.entropy > 0
