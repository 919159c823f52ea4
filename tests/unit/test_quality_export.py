"""Export rows: what each item is (content, external id, metadata), its consensus, and
what each voter saw; Label Studio tasks carry the content in `data`."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from strata.quality import export_formats
from strata.quality.export import label_studio_task, provenance
from strata.quality.export_formats import (
    CsvWriter,
    ExportWriter,
    JsonlWriter,
    LabelStudioWriter,
    ParquetWriter,
)
from strata.quality.item_data import content_json
from strata.quality.store import Decided, ExportVote
from strata.v1 import common_pb2

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n-not-really-"


def test_content_as_a_row_shows_it() -> None:
    text = common_pb2.ItemContent(text="a cat").SerializeToString()
    assert content_json(text) == {"text": "a cat"}
    vec = common_pb2.ItemContent(features=common_pb2.FeatureVector(values=[0.5, 2.0]))
    assert content_json(vec.SerializeToString()) == {"features": [0.5, 2.0]}
    img = common_pb2.ItemContent(image=common_pb2.Image(png=PNG, width=8, height=4))
    raw = img.SerializeToString()
    b64 = base64.b64encode(PNG).decode()
    assert content_json(raw) == {"image": f"data:image/png;base64,{b64}", "width": 8, "height": 4}
    assert content_json(raw, inline_images=True) == {
        "image_base64": b64,
        "image_mime": "image/png",
        "width": 8,
        "height": 4,
    }
    stored = common_pb2.ItemContent(image=common_pb2.Image(uri="s3://bucket/a.png"))
    assert content_json(stored.SerializeToString(), inline_images=True) == {
        "image": "s3://bucket/a.png"
    }
    assert content_json(None) == {}


def decided(**over: object) -> Decided:
    consensus = common_pb2.ConsensusLabel(
        item_id="i1",
        project="p",
        value="cat",
        consensus_score=0.93,
        status=common_pb2.CONSENSUS_STATUS_ACCEPTED,
        method=common_pb2.CONSENSUS_METHOD_DAWID_SKENE,
        ontology_version="v2",
        votes=[common_pb2.Vote(annotator_id="ann", value="cat", weight=0.8, label_id="l1")],
        posterior=[
            common_pb2.ClassScore(class_label="cat", score=0.93),
            common_pb2.ClassScore(class_label="dog", score=0.07),
        ],
    )
    base: dict[str, object] = dict(
        item_id="i1",
        consensus=consensus.SerializeToString(),
        decided_at=AT,
        votes=[ExportVote("l1", "ann", "cat", "human", AT, 2100, 1800, "dog", 0.61, "v3")],
        external_id="row-17",
        content=common_pb2.ItemContent(text="a cat sleeps").SerializeToString(),
        metadata={"source": "forum"},
    )
    base.update(over)
    return Decided(**base)  # type: ignore[arg-type]


def test_a_row_carries_the_item_its_consensus_and_what_each_voter_saw() -> None:
    row = provenance(decided())
    assert (row["item_id"], row["external_id"], row["project"]) == ("i1", "row-17", "p")
    assert row["data"] == {"text": "a cat sleeps", "metadata": {"source": "forum"}}
    assert (row["value"], row["consensus_score"], row["method"], row["status"]) == (
        "cat",
        0.93,
        "dawid_skene",
        "accepted",
    )
    assert row["ontology_version"] == "v2" and row["propagated_from"] is None
    (vote,) = row["votes"]
    assert vote["weight"] == 0.8 and vote["duration_ms"] == 2100 and vote["active_ms"] == 1800
    assert vote["prelabel"] == {"value": "dog", "confidence": 0.61, "model_version": "v3"}
    assert (row["influence_depth"], row["influence_model"]) == (None, None)
    trained = provenance(decided(), trained=(2, "v9"))
    assert (trained["influence_depth"], trained["influence_model"]) == (2, "v9")


def test_an_item_never_seen_imported_still_exports_with_empty_data() -> None:
    row = provenance(decided(external_id="", content=None, metadata=None))
    assert row["external_id"] == "" and row["data"] == {"metadata": {}}


def test_label_studio_gets_the_content_in_data_and_each_vote_as_an_annotation() -> None:
    task = label_studio_task(provenance(decided()))
    assert task["data"]["text"] == "a cat sleeps" and task["data"]["external_id"] == "row-17"
    kinds = [a["meta"]["kind"] for a in task["annotations"]]
    assert kinds == ["consensus", "vote"]
    assert task["annotations"][1]["lead_time"] == 2.1


def records(n: int) -> list[dict]:
    return [
        provenance(
            decided(
                item_id=f"i{k}",
                external_id=f"row-{k}",
                content=common_pb2.ItemContent(
                    features=common_pb2.FeatureVector(values=[k, 0.5])
                ).SerializeToString()
                if k % 2
                else common_pb2.ItemContent(text=f'text, with "quotes" {k}').SerializeToString(),
            )
        )
        for k in range(n)
    ]


def written(writer: ExportWriter, chunks: list[list[dict]]) -> bytes:
    return writer.begin() + b"".join(writer.rows(c) for c in chunks) + writer.end()


def test_every_format_streams_chunks_into_one_readable_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = records(5)
    chunks = [rows[:2], [], rows[2:]]
    lines = written(JsonlWriter(), chunks).decode().splitlines()
    assert [json.loads(line)["external_id"] for line in lines] == [f"row-{k}" for k in range(5)]
    tasks = json.loads(written(LabelStudioWriter(), chunks))
    assert [t["data"]["external_id"] for t in tasks] == [f"row-{k}" for k in range(5)]
    assert json.loads(written(LabelStudioWriter(), [])) == []

    table = list(csv.DictReader(io.StringIO(written(CsvWriter(), chunks).decode())))
    assert [r["external_id"] for r in table] == [f"row-{k}" for k in range(5)]
    assert table[0]["text"] == 'text, with "quotes" 0' and table[0]["features"] == ""
    assert json.loads(table[1]["features"]) == [1.0, 0.5]
    assert json.loads(table[0]["votes"])[0]["prelabel"]["model_version"] == "v3"

    frame = pd.read_parquet(io.BytesIO(written(ParquetWriter(), chunks)))
    assert list(frame["external_id"]) == [f"row-{k}" for k in range(5)]
    assert frame["text"][0] == 'text, with "quotes" 0' and list(frame["features"][1]) == [1, 0.5]
    vote = frame["votes"][0][0]
    assert (vote["annotator_id"], vote["active_ms"], vote["prelabel_model"]) == ("ann", 1800, "v3")
    assert {p["class_label"]: p["score"] for p in frame["posterior"][0]} == {
        "cat": 0.93,
        "dog": 0.07,
    }
    assert list(frame["metadata"][0]) == [{"key": "source", "value": "forum"}]
    # Small chunks share a row group; one is written once the chunks reach its size.
    assert pq.ParquetFile(io.BytesIO(written(ParquetWriter(), chunks))).num_row_groups == 1
    monkeypatch.setattr(export_formats, "PARQUET_ROW_GROUP_BYTES", 1)
    assert pq.ParquetFile(io.BytesIO(written(ParquetWriter(), chunks))).num_row_groups == 2


def test_label_studios_own_converter_reads_the_export(tmp_path: Path) -> None:
    """Label Studio's converter (label-studio-sdk) reads the export as one of its own:
    each task's text, and every annotation's choice and lead time."""
    from label_studio_sdk.converter.converter import Converter

    rows = [r for r in records(4) if "text" in r["data"]]
    (tmp_path / "export.json").write_bytes(written(LabelStudioWriter(), [rows[:1], rows[1:]]))
    config = (
        '<View><Text name="item" value="$text"/><Choices name="label" toName="item">'
        '<Choice value="cat"/><Choice value="dog"/></Choices></View>'
    )
    converter = Converter(config=config, project_dir=str(tmp_path))
    converter.convert(
        str(tmp_path / "export.json"), str(tmp_path / "min"), "JSON_MIN", is_dir=False
    )
    (out,) = (tmp_path / "min").iterdir()
    read = json.loads(out.read_text())
    # One entry per annotation: the consensus and the vote of each task.
    assert sorted((r["id"], r["text"], r["label"]) for r in read) == sorted(
        (n, row["data"]["text"], "cat") for n, row in enumerate(rows, start=1) for _ in range(2)
    )
    assert sorted(r["lead_time"] for r in read if r["lead_time"] is not None) == [2.1] * len(rows)
    assert {r["annotation_id"] for r in read} == set(range(1, 2 * len(rows) + 1))
