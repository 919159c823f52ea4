"""Reading import files: Label Studio tasks, crowd CSVs; the import's pure rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from strata.cli import label_studio
from strata.cli.import_annotations import read_votes
from strata.cli.importer import read_rows
from strata.quality.imports import check, external_annotator, vote_label_id
from strata.v1 import quality_pb2

CLASSES = ["cat", "dog", "bird"]


def studio_task(task_id: int, text: str, *answers: tuple[object, str], **data: str) -> dict:
    return {
        "id": task_id,
        "data": {"text": text, **data},
        "annotations": [
            {
                "completed_by": who,
                "lead_time": 2.5,
                "created_at": "2026-11-30T10:00:00Z",
                "result": [
                    {
                        "from_name": "label",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [value]},
                    }
                ],
            }
            for who, value in answers
        ],
    }


def test_tasks_are_read_one_by_one_with_the_line_each_starts_on() -> None:
    text = '[\n  {"id": 1, "data": {}},\n  7,\n  {"id": 3,\n   "data": {}}\n]\n'
    got = list(label_studio.tasks(text))
    assert got == [
        (2, {"id": 1, "data": {}}),
        (3, "each task must be a JSON object"),
        (4, {"id": 3, "data": {}}),
    ]
    assert list(label_studio.tasks("[]")) == []
    ((line, problem),) = label_studio.tasks('{"id": 1}')
    assert line == 1 and str(problem).startswith("a Label Studio file")
    broken = list(label_studio.tasks('[\n {"id": 1, "data": {}},\n {"id": 2,, }\n]'))
    assert broken[0][0] == 2 and broken[1][0] == 3 and "invalid JSON" in str(broken[1][1])
    unclosed = list(label_studio.tasks('[\n {"id": 1, "data": {}}\n'))
    assert unclosed[-1][1] == "the array of tasks is not closed with ']'"


def test_a_task_becomes_an_item_record_keeping_its_external_id() -> None:
    task = studio_task(12, "a cat", source="web")
    task["meta"] = {"batch": 3}
    assert label_studio.item_record(task) == {
        "id": "12",
        "text": "a cat",
        "metadata": {"source": "web", "batch": 3},
    }
    # What Strata exported: its external id wins over Label Studio's task id, and the
    # keys Strata added are not metadata.
    exported = {
        "id": 99,
        "data": {
            "text": "x",
            "external_id": "ext-5",
            "item_id": "i1",
            "project": "p",
            "metadata": {"k": "v"},
        },
    }
    assert label_studio.item_record(exported) == {
        "id": "ext-5",
        "text": "x",
        "metadata": {"k": "v"},
    }
    inline = {"id": 1, "data": {"image": "data:image/png;base64,AAAA"}}
    assert label_studio.item_record(inline)["image_base64"] == "AAAA"
    with pytest.raises(ValueError, match="is a URL"):
        label_studio.item_record({"id": 1, "data": {"image": "https://x/y.png"}})
    with pytest.raises(ValueError, match="no data"):
        label_studio.item_record({"id": 1})


def test_answers_skip_cancelled_and_consensus_annotations() -> None:
    task = studio_task(1, "t", (3, "cat"), ({"id": 4, "email": "ann@x.org"}, "dog"))
    task["annotations"].append({"was_cancelled": True, "completed_by": 5, "result": []})
    task["annotations"].append(
        {"meta": {"kind": "consensus"}, "result": task["annotations"][0]["result"]}
    )
    task["annotations"].append({"completed_by": 6, "result": []})
    got = list(label_studio.answers(task))
    assert got[:2] == [
        label_studio.Answer("ls-user-3", "cat", 2500, "2026-11-30T10:00:00Z"),
        label_studio.Answer("ann@x.org", "dog", 2500, "2026-11-30T10:00:00Z"),
    ]
    assert got[2] == "annotation 5: its result is empty"


def test_a_crowd_csv_reads_answers_and_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "crowd.csv"
    path.write_text(
        "item,annotator,value,duration_ms\n"
        "a,w1,cat,1200\n"
        "b,w2,dog\n"
        "c,w3,cat,soon\n"
        'd,"w4",cat,1,extra\n'
        "e,w5,bird,\n"
    )
    errors: list[tuple[int, str]] = []
    votes = list(read_votes(path, errors))
    assert [(v.line, v.item, v.annotator, v.value, v.duration_ms) for v in votes] == [
        (2, "a", "w1", "cat", 1200),
        (3, "b", "w2", "dog", 0),
        (6, "e", "w5", "bird", 0),
    ]
    assert errors == [(4, "duration_ms 'soon' is not a number"), (5, "expected 4 fields")]
    header = tmp_path / "bad.csv"
    header.write_text("item,who,value\na,b,c\n")
    errors = []
    assert list(read_votes(header, errors)) == []
    assert errors == [(1, "the header needs item, annotator, value; missing annotator")]


def test_a_label_studio_export_reads_each_annotation_as_an_answer(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    tasks = [studio_task(1, "one", (1, "cat"), (2, "dog")), studio_task(2, "two", (1, "bird"))]
    path.write_text(json.dumps(tasks, indent=1))
    errors: list[tuple[int, str]] = []
    votes = list(read_votes(path, errors))
    assert errors == []
    assert [(v.item, v.annotator, v.value, v.duration_ms) for v in votes] == [
        ("1", "ls-user-1", "cat", 2500),
        ("1", "ls-user-2", "dog", 2500),
        ("2", "ls-user-1", "bird", 2500),
    ]
    assert votes[0].submitted_at.ToJsonString() == "2026-11-30T10:00:00Z"


def test_label_studio_tasks_import_as_items(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(
        json.dumps([studio_task(1, "one"), {"id": 2, "data": {"html": "<b>"}}], indent=1)
    )
    errors: list[tuple[int, str]] = []
    rows = list(read_rows(path, errors))
    assert [(r.external_id, r.content.text) for r in rows] == [("1", "one")]
    assert errors == [(9, "needs text, features, image or image_base64")]


def test_imported_votes_are_checked_and_named_apart_from_accounts() -> None:
    def vote(**kw: object) -> quality_pb2.ImportedVote:
        base: dict[str, object] = {"line": 1, "item": "a", "annotator": "w", "value": "cat"}
        return quality_pb2.ImportedVote(**{**base, **kw})  # type: ignore[arg-type]

    assert check(vote(), CLASSES) is None
    assert check(vote(value="cow"), CLASSES) == (
        "'cow' is not a class of the contract (classes: cat, dog, bird)"
    )
    assert check(vote(item=" ", annotator=""), CLASSES) == "item and annotator are empty"
    assert check(vote(duration_ms=-1), CLASSES) == "duration_ms cannot be negative"
    assert external_annotator(" alice ") == "ext:alice"
    assert external_annotator("ext:alice") == "ext:alice"  # a re-import of an export
    assert vote_label_id("p", "i", "ext:a") == vote_label_id("p", "i", "ext:a")
    assert vote_label_id("p", "i", "ext:a") != vote_label_id("p", "i", "ext:b")
