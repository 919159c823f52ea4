"""Quality's `ExportLabels` as its clients read it (`strata export` writes it to a file, the
web console streams it to a browser): the formats by name, and the call.

Quality frames every format itself (the CSV header, the Label Studio array's brackets and
commas, Parquet's footer): a client writes the chunks' bytes in order and has the file,
holding one chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from strata.v1 import quality_pb2


@dataclass(frozen=True)
class ExportFileFormat:
    """One export format: its proto value, and the file it makes."""

    name: str
    proto: quality_pb2.ExportFormat
    suffix: str
    media_type: str


EXPORT_FORMATS: dict[str, ExportFileFormat] = {
    f.name: f
    for f in (
        ExportFileFormat(
            "jsonl", quality_pb2.EXPORT_FORMAT_JSONL, ".jsonl", "application/x-ndjson"
        ),
        ExportFileFormat("csv", quality_pb2.EXPORT_FORMAT_CSV, ".csv", "text/csv; charset=utf-8"),
        ExportFileFormat(
            "parquet",
            quality_pb2.EXPORT_FORMAT_PARQUET,
            ".parquet",
            "application/vnd.apache.parquet",
        ),
        ExportFileFormat(
            "label-studio",
            quality_pb2.EXPORT_FORMAT_LABEL_STUDIO,
            ".label-studio.json",
            "application/json",
        ),
    )
}


def export_labels(
    stub: Any,
    metadata: Sequence[tuple[str, str]],
    project: str,
    fmt: str,
    *,
    inline_images: bool = False,
    timeout: float = 600.0,
) -> Iterator[quality_pb2.ExportLabelsResponse]:
    """The `ExportLabels` call of `project` in format `fmt` (a key of EXPORT_FORMATS): its
    chunks, in order; the returned iterator is also the grpc.Call (`cancel()`)."""
    call: Iterator[quality_pb2.ExportLabelsResponse] = stub.ExportLabels(
        quality_pb2.ExportLabelsRequest(
            project=project, format=EXPORT_FORMATS[fmt].proto, inline_images=inline_images
        ),
        metadata=metadata,
        timeout=timeout,
    )
    return call
