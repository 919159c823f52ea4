"""Export rows (export.provenance) written as a stream of bytes, one chunk at a time, in
each format: JSONL, CSV, Parquet or Label Studio JSON. A writer holds at most one chunk
(Parquet: one row group), so memory stays flat however large the project (schema:
docs/export.md)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from strata.quality.export import jsonl_line, label_studio_task


class ExportWriter(Protocol):
    def begin(self) -> bytes: ...
    def rows(self, records: Sequence[dict[str, Any]]) -> bytes: ...
    def end(self) -> bytes: ...


class JsonlWriter:
    def begin(self) -> bytes:
        return b""

    def rows(self, records: Sequence[dict[str, Any]]) -> bytes:
        return b"".join(jsonl_line(r) for r in records)

    def end(self) -> bytes:
        return b""


class LabelStudioWriter:
    """One JSON array of Label Studio tasks, written element by element. Tasks and their
    annotations are numbered as Label Studio's own exports number them (1, 2, ... in
    export order): its converter reads a task by its `id`."""

    def __init__(self) -> None:
        self._first = True
        self._tasks = 0
        self._annotations = 0

    def begin(self) -> bytes:
        return b"[\n"

    def _numbered(self, record: dict[str, Any]) -> dict[str, Any]:
        task = label_studio_task(record)
        self._tasks += 1
        task["id"] = self._tasks
        for annotation in task["annotations"]:
            self._annotations += 1
            annotation["id"] = self._annotations
        return task

    def rows(self, records: Sequence[dict[str, Any]]) -> bytes:
        if not records:
            return b""
        body = ",\n".join(json.dumps(self._numbered(r), sort_keys=True) for r in records)
        out = body if self._first else ",\n" + body
        self._first = False
        return out.encode()

    def end(self) -> bytes:
        return b"\n]\n"


# Flat columns shared by CSV and Parquet: the content split by kind, the rest as is.
SCALARS = (
    "item_id",
    "external_id",
    "project",
    "value",
    "consensus_score",
    "status",
    "method",
    "model_label",
    "ontology_version",
    "decided_at",
    "propagated_from",
    "influence_depth",
    "influence_model",
)


def flat(record: dict[str, Any]) -> dict[str, Any]:
    """One record as flat columns: text, features and image split out of `data`."""
    data = record["data"]
    out = {k: record[k] for k in SCALARS}
    out["text"] = data.get("text")
    out["features"] = data.get("features")
    out["image"] = data.get("image") or data.get("image_base64")
    out["metadata"] = data.get("metadata") or {}
    out["posterior"] = record["posterior"]
    out["votes"] = record["votes"]
    return out


CSV_COLUMNS = (*SCALARS, "text", "features", "image", "metadata", "posterior", "votes")


class CsvWriter:
    """A header, then one line per item; lists and objects as JSON text."""

    def begin(self) -> bytes:
        return self._lines([dict(zip(CSV_COLUMNS, CSV_COLUMNS, strict=True))], header=True)

    def rows(self, records: Sequence[dict[str, Any]]) -> bytes:
        return self._lines([flat(r) for r in records])

    def end(self) -> bytes:
        return b""

    @staticmethod
    def _lines(rows: list[dict[str, Any]], header: bool = False) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in rows:
            writer.writerow(
                [
                    cell
                    if header
                    else json.dumps(cell, sort_keys=True)
                    if isinstance(cell, (list, dict))
                    else ""
                    if cell is None
                    else cell
                    for cell in (row[c] for c in CSV_COLUMNS)
                ]
            )
        return buf.getvalue().encode()


_VOTE = pa.struct(
    [
        ("label_id", pa.string()),
        ("annotator_id", pa.string()),
        ("value", pa.string()),
        ("source", pa.string()),
        ("submitted_at", pa.string()),
        ("duration_ms", pa.int64()),
        ("active_ms", pa.int64()),
        ("weight", pa.float64()),
        ("prelabel_value", pa.string()),
        ("prelabel_confidence", pa.float64()),
        ("prelabel_model", pa.string()),
    ]
)
PARQUET_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("external_id", pa.string()),
        ("project", pa.string()),
        ("value", pa.string()),
        ("consensus_score", pa.float64()),
        ("status", pa.string()),
        ("method", pa.string()),
        ("model_label", pa.bool_()),
        ("ontology_version", pa.string()),
        ("decided_at", pa.string()),
        ("propagated_from", pa.string()),
        ("influence_depth", pa.int32()),
        ("influence_model", pa.string()),
        ("text", pa.string()),
        ("features", pa.list_(pa.float32())),
        ("image", pa.string()),
        # Lists of structs, not maps: every Parquet reader (datasets included) takes them.
        ("metadata", pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))),
        (
            "posterior",
            pa.list_(pa.struct([("class_label", pa.string()), ("score", pa.float64())])),
        ),
        ("votes", pa.list_(_VOTE)),
    ]
)


def _parquet_row(record: dict[str, Any]) -> dict[str, Any]:
    row = flat(record)
    row["metadata"] = [{"key": k, "value": v} for k, v in row["metadata"].items()]
    row["posterior"] = [{"class_label": k, "score": v} for k, v in row["posterior"].items()]
    row["votes"] = [
        {
            **{k: v[k] for k in ("label_id", "annotator_id", "value", "source", "submitted_at")},
            "duration_ms": v["duration_ms"],
            "active_ms": v.get("active_ms", 0),
            "weight": v.get("weight"),
            "prelabel_value": (v.get("prelabel") or {}).get("value"),
            "prelabel_confidence": (v.get("prelabel") or {}).get("confidence"),
            "prelabel_model": (v.get("prelabel") or {}).get("model_version"),
        }
        for v in row["votes"]
    ]
    return row


class _Drain:
    """A file-like sink whose bytes are taken as they are written (Parquet's row groups)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


# Chunks are gathered into row groups of about this many bytes (Arrow's in memory; about
# 10,000 text items). The writer keeps every row group's metadata until it writes the
# footer: a group per 500-item chunk cost 110 MB more memory at 1M items than at 100k, and
# a 7 MB footer.
PARQUET_ROW_GROUP_BYTES = 8 * 1024 * 1024


class ParquetWriter:
    """One Parquet file, a row group per PARQUET_ROW_GROUP_BYTES of chunks (readable by
    pandas and `datasets`)."""

    def __init__(self) -> None:
        self._sink = _Drain()
        self._writer = pq.ParquetWriter(self._sink, PARQUET_SCHEMA, compression="zstd")
        self._group: list[pa.Table] = []

    def begin(self) -> bytes:
        return self._sink.take()

    def rows(self, records: Sequence[dict[str, Any]]) -> bytes:
        if records:
            rows = [_parquet_row(r) for r in records]
            self._group.append(pa.Table.from_pylist(rows, PARQUET_SCHEMA))
        if sum(t.nbytes for t in self._group) >= PARQUET_ROW_GROUP_BYTES:
            self._write_group()
        return self._sink.take()

    def end(self) -> bytes:
        self._write_group()
        self._writer.close()
        return self._sink.take()

    def _write_group(self) -> None:
        if self._group:
            self._writer.write_table(pa.concat_tables(self._group))
            self._group = []
