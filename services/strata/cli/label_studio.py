"""Reading Label Studio's JSON: tasks, their annotations and their predictions.

A Label Studio export (and its import format) is one JSON array of tasks:
`{"id", "data": {...}, "annotations": [...], "predictions": [...], "meta"}`. Each task
is read on its own, with the line it starts on, so one bad task is reported by line
and the others go on. Pure: text in, records out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# `data` keys that are the item's content; any other scalar is kept as metadata.
CONTENT_KEYS = ("text", "image", "image_base64", "features")
# Keys Strata's own export adds to `data`; not metadata of the item.
STRATA_KEYS = ("item_id", "external_id", "project", "metadata", "image_mime", "width", "height")


def is_task_array(path: Path) -> bool:
    """A Label Studio file is one JSON array; JSON lines start with an object."""
    with path.open("rb") as f:
        return f.read(4096).lstrip()[:1] == b"["


def tasks(text: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, task) for each element of a JSON array of tasks, or (line, problem) for
    an element that is not a task. A break in the JSON itself ends the reading with
    one problem at its line (what follows cannot be told apart)."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "[":
        yield 1, "a Label Studio file is a JSON array of tasks: it starts with '['"
        return
    pos = _skip(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while pos < len(text):
        line = text.count("\n", 0, pos) + 1
        try:
            task, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})"
            return
        yield line, task if isinstance(task, dict) else "each task must be a JSON object"
        pos = _skip(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        if pos < len(text):
            yield text.count("\n", 0, pos) + 1, "expected ',' or ']' after a task"
            return
    yield text.count("\n") + 1, "the array of tasks is not closed with ']'"


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def external_id(task: dict[str, Any]) -> str:
    """The item's external id: the one Strata exported, else Label Studio's task id."""
    data = task.get("data")
    if isinstance(data, dict) and data.get("external_id") not in (None, ""):
        return str(data["external_id"])
    if task.get("id") in (None, ""):
        raise ValueError("the task has neither data.external_id nor an id")
    return str(task["id"])


def item_record(task: dict[str, Any]) -> dict[str, Any]:
    """A task as the record `strata import` reads (id, text/features/image, metadata)."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise ValueError("the task has no data object")
    record: dict[str, Any] = {"id": external_id(task)}
    for key in CONTENT_KEYS:
        if data.get(key) not in (None, ""):
            record[key] = data[key]
            break
    image = record.get("image")
    if isinstance(image, str) and image.startswith("data:image/"):
        record["image_base64"] = image.split(",", 1)[1]
        del record["image"]
    elif isinstance(image, str) and "://" in image:
        raise ValueError(f"image {image[:60]!r} is a URL; Strata imports image files or base64")
    metadata = dict(data.get("metadata") or {})
    metadata.update(
        (k, v)
        for k, v in data.items()
        if k not in CONTENT_KEYS and k not in STRATA_KEYS and isinstance(v, str | int | float)
    )
    meta = task.get("meta")
    if isinstance(meta, dict):
        metadata.update((k, v) for k, v in meta.items() if isinstance(v, str | int | float))
    record["metadata"] = metadata
    return record


@dataclass(frozen=True)
class Answer:
    annotator: str
    value: str
    duration_ms: int
    created_at: str  # ISO 8601, or ""


def choice(result: Any) -> str:
    """The one class of a choices result list."""
    if not isinstance(result, list) or not result:
        raise ValueError("its result is empty")
    picked = [
        c
        for r in result
        if isinstance(r, dict) and r.get("type") == "choices"
        for c in (r.get("value") or {}).get("choices") or []
    ]
    if len(picked) != 1:
        raise ValueError(f"its result holds {len(picked)} choices; one class is one choice")
    return str(picked[0])


def _annotator(annotation: dict[str, Any]) -> str:
    meta = annotation.get("meta")
    if isinstance(meta, dict) and meta.get("annotator_id"):
        return str(meta["annotator_id"])  # a vote Strata exported
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    if who in (None, ""):
        raise ValueError("it has no completed_by")
    return str(who) if not isinstance(who, int) else f"ls-user-{who}"


def answers(task: dict[str, Any]) -> Iterator[Answer | str]:
    """Each person's answer on the task, or a problem with one of its annotations.
    Cancelled (skipped) annotations and Strata's consensus annotation are not answers."""
    for n, annotation in enumerate(task.get("annotations") or [], start=1):
        if not isinstance(annotation, dict):
            yield f"annotation {n} is not an object"
            continue
        meta = annotation.get("meta")
        if annotation.get("was_cancelled") or (
            isinstance(meta, dict) and meta.get("kind") == "consensus"
        ):
            continue
        try:
            lead = annotation.get("lead_time")
            yield Answer(
                _annotator(annotation),
                choice(annotation.get("result")),
                round(float(lead) * 1000) if lead not in (None, "") else 0,
                str(annotation.get("created_at") or ""),
            )
        except (TypeError, ValueError) as exc:
            yield f"annotation {n}: {exc}"
