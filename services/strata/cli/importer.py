"""`strata import FILE`: stream a file of items into the sampler; and the command's
other forms, `strata import annotations|predictions FILE`.

JSONL: one object per line with `text`, `features` (list of numbers) or `image`
(a PNG path, or `image_base64`), and optional `id`, `metadata` and `gold_answer`.
CSV: a `text` column or feature columns `f0..fN`, optional `id`, `gold_answer`
and `meta.<name>` columns. Label Studio tasks (a JSON array): `data.text`,
`data.image` (base64 data: URI or a file path) or `data.features`; the external id is
`data.external_id` or the task's id. Malformed lines are reported with their numbers
and skipped; the good ones are imported.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from strata.cli import label_studio
from strata.cli.connect import target
from strata.cli.import_annotations import cmd_import_annotations
from strata.cli.progress import ProgressBar, report_refused
from strata.cli.stack import StackConfig
from strata.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc

CHUNK = 1000


IMAGE_PATH_REFUSED = (
    "the image is a file path, which is not read here (a file uploaded to a server cannot "
    "name files on it): give the PNG inline as image_base64 (or a data: URI), or import "
    "the file with `strata import` on the computer that holds the images"
)


def row_from_record(line: int, record: dict[str, Any], base: Path | None) -> sampler_pb2.ImportRow:
    """One import row; ValueError says what is wrong with the record. Image paths are
    read relative to `base`; with no base (a file uploaded to a server), not at all."""
    content = common_pb2.ItemContent()
    if record.get("text") not in (None, ""):
        content.text = str(record["text"])
    elif record.get("features") is not None:
        values = record["features"]
        if not isinstance(values, list):
            raise ValueError("features must be a list of numbers")
        content.features.values.extend(float(v) for v in values)
    elif record.get("image"):
        if base is None:
            raise ValueError(IMAGE_PATH_REFUSED)
        path = Path(str(record["image"]))
        path = path if path.is_absolute() else base / path
        content.image.png = path.read_bytes()
    elif record.get("image_base64"):
        content.image.png = base64.b64decode(str(record["image_base64"]))
    else:
        raise ValueError("needs text, features, image or image_base64")
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object")
    return sampler_pb2.ImportRow(
        line=line,
        external_id=str(record.get("id", "")),
        content=content,
        metadata={str(k): str(v) for k, v in metadata.items()},
        gold_answer=str(record.get("gold_answer") or ""),
    )


def label_studio_rows(
    path: Path, errors: list[tuple[int, str]], base: Path | None
) -> Iterator[sampler_pb2.ImportRow]:
    for line, task in label_studio.tasks(path.read_text(encoding="utf-8")):
        try:
            if isinstance(task, str):
                raise ValueError(task)
            yield row_from_record(line, label_studio.item_record(task), base)
        except (ValueError, OSError) as exc:
            errors.append((line, str(exc)))


def read_rows(
    path: Path, errors: list[tuple[int, str]], image_files: bool = True
) -> Iterator[sampler_pb2.ImportRow]:
    """The file's rows; what cannot be read goes to `errors` with its line number.
    `image_files=False` refuses rows whose image is a file path (a server reading an
    uploaded file must not read files the upload names)."""
    base = path.parent if image_files else None
    if label_studio.is_task_array(path):
        yield from label_studio_rows(path, errors, base)
        return
    with path.open(newline="") as f:
        if path.suffix.lower() == ".csv":
            for line, rec in enumerate(csv.DictReader(f), start=2):
                features = sorted(
                    (k for k in rec if k and k[0] == "f" and k[1:].isdigit()),
                    key=lambda k: int(k[1:]),
                )
                record: dict[str, Any] = {
                    "id": rec.get("id", ""),
                    "gold_answer": rec.get("gold_answer", ""),
                    "metadata": {k[5:]: v for k, v in rec.items() if k and k.startswith("meta.")},
                }
                try:
                    if rec.get("text"):
                        record["text"] = rec["text"]
                    elif features:
                        record["features"] = [float(rec[k]) for k in features]
                    yield row_from_record(line, record, base)
                except (ValueError, OSError) as exc:
                    errors.append((line, str(exc)))
            return
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ValueError("each line must be a JSON object")
                yield row_from_record(line, obj, base)
            except (ValueError, OSError) as exc:
                errors.append((line, str(exc)))


KINDS = ("items", "annotations", "predictions")


def cmd_import(args: argparse.Namespace, config: StackConfig) -> int:
    """`strata import [items|annotations|predictions] FILE`: dispatch on what is imported."""
    if args.file is None:
        args.file, args.what = args.what, "items"
    elif args.what not in KINDS:
        print(f"strata import: import what? {args.what!r} is not one of {', '.join(KINDS)}")
        return 2
    if args.what == "annotations":
        return cmd_import_annotations(args, config)
    if args.what == "predictions":
        if not args.model:
            print("strata import predictions: --model NAME is required (the model's version)")
            return 2
        from strata.cli.import_predictions import cmd_import_predictions

        return cmd_import_predictions(args, config)
    return import_items(args, config)


def import_items(args: argparse.Namespace, config: StackConfig) -> int:
    """Stream FILE into the sampler and print what was imported, deduplicated or rejected."""
    path = Path(args.file)
    if not path.exists():
        print(f"strata import: no such file: {path}")
        return 1
    errors: list[tuple[int, str]] = []
    total = sum(1 for _ in path.open()) - (1 if path.suffix.lower() == ".csv" else 0)
    bar = ProgressBar("importing", total)
    sent = 0

    def requests() -> Iterator[sampler_pb2.ImportItemsRequest]:
        nonlocal sent
        chunk: list[sampler_pb2.ImportRow] = []
        for row in read_rows(path, errors):
            chunk.append(row)
            if len(chunk) >= CHUNK:
                sent += len(chunk)
                bar.update(sent + len(errors))
                yield sampler_pb2.ImportItemsRequest(project=args.project, rows=chunk)
                chunk = []
        if chunk:
            sent += len(chunk)
            yield sampler_pb2.ImportItemsRequest(project=args.project, rows=chunk)

    sampler = target(config, "sampler", args.sampler or "", "a project manager's or admin's")
    with sampler.channel() as channel:
        stub = sampler_pb2_grpc.SamplerStub(channel)
        try:
            reply = stub.ImportItems(requests(), metadata=sampler.metadata, timeout=3600)
        except grpc.RpcError as exc:
            print(f"strata import: {exc.code().name}: {exc.details()}")
            return 1
    bar.update(total)
    bar.close()
    errors.extend((e.line, e.message) for e in reply.errors)
    print(
        f"{reply.imported} imported, {reply.gold} gold, {reply.exact_duplicates} exact and "
        f"{reply.near_duplicates} near duplicates, {len(errors)} rejected"
    )
    report_refused(errors, len(errors))
    return 0 if not errors else 3


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    imp = sub.add_parser(
        "import",
        help="import items (JSONL, CSV, Label Studio tasks), annotations or predictions",
        description="strata import FILE: items into a project's pool. "
        "strata import annotations FILE: answers gathered elsewhere (CSV item,annotator,value "
        "or a Label Studio export) as votes. strata import predictions --model NAME FILE: an "
        "outside model's predictions (JSONL item,value,confidence or Label Studio) as "
        "pre-labels.",
    )
    imp.add_argument("what", metavar="[items|annotations|predictions]", help="what to import")
    imp.add_argument("file", nargs="?", help="the file (JSONL, CSV or Label Studio JSON)")
    imp.add_argument("--project", required=True)
    imp.add_argument("--model", help="predictions: the model version they came from")
    imp.add_argument("--sampler", help="sampler host:port (default: the running stack's)")
    imp.add_argument("--quality", help="quality host:port (default: the running stack's)")
    imp.add_argument("--inference", help="inference host:port (default: the running stack's)")
    imp.set_defaults(func=cmd_import)
