"""`strata report` and `strata export`: the quality service's report and export, to files."""

from __future__ import annotations

import argparse
import base64
import re
from pathlib import Path

import grpc

from strata.cli.connect import Target, target
from strata.cli.stack import StackConfig
from strata.common.exports import EXPORT_FORMATS, export_labels
from strata.v1 import quality_pb2, quality_pb2_grpc


def _target(args: argparse.Namespace, config: StackConfig) -> Target:
    """Quality's address, the caller's bearer metadata and TLS, from flags or the stack."""
    return target(config, "quality", args.quality or "", "a reviewer's or admin's")


def write_report(
    stub: quality_pb2_grpc.QualityStub, metadata: list[tuple[str, str]], project: str, out: Path
) -> Path:
    """The dataset quality report of a project as JSON, an HTML page and its PNG plots."""
    out.mkdir(parents=True, exist_ok=True)
    reply = stub.DatasetReport(
        quality_pb2.DatasetReportRequest(project=project), metadata=metadata, timeout=300
    )
    (out / "quality_report.json").write_text(reply.report_json + "\n")
    (out / "quality_report.html").write_text(reply.html)
    # The page embeds its plots; they are also written as files for reuse.
    for name, data in re.findall(
        r"<img alt='([\w.]+)' src='data:image/png;base64,([^']+)'", reply.html
    ):
        (out / name).write_bytes(base64.b64decode(data))
    return out / "quality_report.html"


FORMATS = {name: f.proto for name, f in EXPORT_FORMATS.items()}
# A million items take about two minutes; tens of millions, the better part of an hour.
EXPORT_TIMEOUT_S = 6 * 3600.0


def write_export(
    stub: quality_pb2_grpc.QualityStub,
    metadata: list[tuple[str, str]],
    project: str,
    fmt: str,
    path: Path,
    inline_images: bool = False,
) -> int:
    """A project's decided items, with their content and provenance, to `path`;
    returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = 0
    with path.open("wb") as sink:
        for chunk in export_labels(
            stub, metadata, project, fmt, inline_images=inline_images, timeout=EXPORT_TIMEOUT_S
        ):
            sink.write(chunk.chunk)
            records += chunk.records
    return records


def cmd_report(args: argparse.Namespace, config: StackConfig) -> int:
    """Write the dataset quality report (JSON, HTML, PNG plots) for a project."""
    quality = _target(args, config)
    with quality.channel() as channel:
        try:
            page = write_report(
                quality_pb2_grpc.QualityStub(channel),
                quality.metadata,
                args.project,
                Path(args.output),
            )
        except grpc.RpcError as exc:
            print(f"strata report: {exc.code().name}: {exc.details()}")
            return 1
    print(f"quality report for {args.project}: {page}")
    return 0


def cmd_export(args: argparse.Namespace, config: StackConfig) -> int:
    """Export accepted labels (JSONL with provenance, or Label Studio JSON)."""
    quality = _target(args, config)
    path = Path(args.output)
    with quality.channel() as channel:
        try:
            records = write_export(
                quality_pb2_grpc.QualityStub(channel),
                quality.metadata,
                args.project,
                args.format,
                path,
                args.images == "base64",
            )
        except grpc.RpcError as exc:
            print(f"strata export: {exc.code().name}: {exc.details()}")
            return 1
    print(f"{records} accepted labels of {args.project} written to {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    report = sub.add_parser("report", help="write a project's dataset quality report")
    report.add_argument("--project", required=True)
    report.add_argument("--output", default="quality-report", help="folder to write into")
    report.add_argument("--quality", help="quality host:port (default: the running stack's)")
    report.set_defaults(func=cmd_report)
    export = sub.add_parser("export", help="export a project's accepted labels")
    export.add_argument("--project", required=True)
    export.add_argument("--format", choices=list(FORMATS), default="jsonl")
    export.add_argument("--output", required=True, help="file to write")
    export.add_argument(
        "--images",
        choices=["uri", "base64"],
        default="uri",
        help="images in `data` as a URI (a data: URI for stored PNGs) or as base64",
    )
    export.add_argument("--quality", help="quality host:port (default: the running stack's)")
    export.set_defaults(func=cmd_export)
