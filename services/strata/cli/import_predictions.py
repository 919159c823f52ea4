"""`strata import predictions --project P --model NAME FILE`: an outside model's
predictions as pre-labels.

FILE is JSONL, one prediction a line: `{"item": ..., "value": ..., "confidence": ...}`
with optional `"probabilities": {class: p}` (`item` is the item's external id as
imported, or its Strata item id; `external_id` or `item_id` may name it instead). Or a
Label Studio task export (a JSON array of tasks with `predictions`): the item is the
task's `data.external_id`, else its `id`; the class is the prediction's one choice and
the confidence its `score`. Bad lines are reported with their numbers and skipped; the
good ones are imported. Importing the same file again changes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from strata.cli.connect import fail, target
from strata.cli.label_studio import choice, external_id, is_task_array, tasks
from strata.cli.progress import ProgressBar, report_refused
from strata.cli.stack import StackConfig
from strata.v1 import inference_pb2, inference_pb2_grpc

CHUNK = 1000
SHOWN_ERRORS = 20


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _name(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return str(value)


def prediction_from_record(line: int, record: dict[str, Any]) -> inference_pb2.ImportedPrediction:
    """One row from a JSONL record; ValueError says what is wrong with it. The classes
    and ranges are checked against the project's contract by inference."""
    item = next((record[k] for k in ("item", "external_id", "item_id") if k in record), None)
    if item is None:
        raise ValueError("needs item (the item's external id or item id)")
    row = inference_pb2.ImportedPrediction(line=line, item=_name(item, "item"))
    probabilities = record.get("probabilities")
    if probabilities is not None:
        if not isinstance(probabilities, dict) or not probabilities:
            raise ValueError("probabilities must be an object of class: probability")
        for name, p in probabilities.items():
            row.probabilities[str(name)] = _number(p, f"probability of {name!r}")
    if record.get("value") is not None:
        row.value = _name(record["value"], "value")
    elif probabilities is None:
        raise ValueError("needs value (the predicted class) or probabilities")
    if record.get("confidence") is not None:
        row.confidence = _number(record["confidence"], "confidence")
    elif probabilities is None:
        raise ValueError("needs confidence (or probabilities)")
    return row


def _label_studio_prediction(task: dict[str, Any], model: str) -> dict[str, Any] | None:
    """The one prediction of `task` to import (the one of `model` when it has several),
    None when it has none."""
    found = task.get("predictions") or []
    if not isinstance(found, list):
        raise ValueError("predictions must be a list")
    if not found:
        return None
    if not all(isinstance(p, dict) for p in found):
        raise ValueError("each prediction must be an object")
    if len(found) == 1:
        return dict(found[0])
    mine = [p for p in found if model and str(p.get("model_version", "")) == model]
    if len(mine) == 1:
        return dict(mine[0])
    versions = ", ".join(sorted({str(p.get("model_version", "")) or "(none)" for p in found}))
    named = f"{len(mine)} are" if mine else "none is"
    raise ValueError(
        f"the task has {len(found)} predictions (model versions {versions}) and {named} "
        f"model {model!r}: import one model version at a time, named as in the file"
    )


def prediction_from_task(
    line: int, task: dict[str, Any], model: str = ""
) -> inference_pb2.ImportedPrediction | None:
    """The row a Label Studio task gives (None: it has no prediction); ValueError says
    what is wrong with it."""
    found = _label_studio_prediction(task, model)
    if found is None:
        return None
    result = found.get("result")
    value = choice(result)
    score = found.get("score")
    if score is None and isinstance(result, list):
        score = next(
            (r["score"] for r in result if isinstance(r, dict) and r.get("score") is not None),
            None,
        )
    if score is None:
        raise ValueError("the prediction has no score (its confidence)")
    return inference_pb2.ImportedPrediction(
        line=line,
        item=external_id(task),
        value=value,
        confidence=_number(score, "score"),
    )


def read_predictions(
    path: Path, errors: list[tuple[int, str]], model: str = ""
) -> Iterator[inference_pb2.ImportedPrediction]:
    """The rows of a JSONL or Label Studio file, each with its line; a bad line goes to
    `errors` (line, message) and the reading goes on. `model` picks a Label Studio
    task's prediction when it has several (by their `model_version`)."""
    if is_task_array(path):
        for line, task in tasks(path.read_text()):
            if isinstance(task, str):
                errors.append((line, task))
                continue
            try:
                row = prediction_from_task(line, task, model)
            except (AttributeError, TypeError, ValueError) as exc:
                errors.append((line, f"task {task.get('id', '?')}: {exc}"))
                continue
            if row is not None:
                yield row
        return
    with path.open() as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                errors.append((line, f"invalid JSON: {exc.msg} (column {exc.colno})"))
                continue
            try:
                if not isinstance(record, dict):
                    raise ValueError("each line must be a JSON object")
                yield prediction_from_record(line, record)
            except ValueError as exc:
                errors.append((line, str(exc)))


def cmd_import_predictions(args: argparse.Namespace, config: StackConfig) -> int:
    """Stream FILE's predictions into inference as pre-labels of model NAME and print
    what was imported, already there, or rejected (by line)."""
    path = Path(args.file)
    if not path.is_file():
        print(f"strata import predictions: no such file: {path}")
        return 1
    errors: list[tuple[int, str]] = []
    with path.open() as f:
        lines = sum(1 for _ in f)
    bar = ProgressBar("importing", lines)

    def requests() -> Iterator[inference_pb2.ImportPredictionsRequest]:
        chunk: list[inference_pb2.ImportedPrediction] = []
        for row in read_predictions(path, errors, args.model):
            chunk.append(row)
            if len(chunk) >= CHUNK:
                bar.update(row.line)
                yield inference_pb2.ImportPredictionsRequest(
                    project=args.project, model=args.model, rows=chunk
                )
                chunk = []
        # Always one message, so an empty file still names its project and model.
        yield inference_pb2.ImportPredictionsRequest(
            project=args.project, model=args.model, rows=chunk
        )

    inference = target(config, "inference", args.inference or "", "a project manager's or admin's")
    with inference.channel() as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        try:
            reply = stub.ImportPredictions(requests(), metadata=inference.metadata, timeout=3600)
        except grpc.RpcError as exc:
            bar.close()
            return fail("import predictions", exc)
    bar.update(lines)
    bar.close()
    errors.extend((e.line, e.message) for e in reply.errors)
    rejected = reply.rejected + len(errors) - len(reply.errors)
    print(
        f"{reply.imported} imported, {reply.already} already imported, {rejected} rejected "
        f"(model {args.model}, project {args.project})"
    )
    report_refused(errors, rejected, SHOWN_ERRORS)
    if any(message.startswith("no item with external id") for _, message in errors):
        print(
            "  items imported moments ago reach inference shortly after: run the same "
            "command again (lines imported before are not imported twice)"
        )
    return 0 if not rejected else 3
