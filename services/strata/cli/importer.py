"""`strata import FILE`: stream a JSONL or CSV file of items into the sampler.

JSONL: one object per line with `text`, `features` (list of numbers) or `image`
(a PNG path, or `image_base64`), and optional `id`, `metadata` and `gold_answer`.
CSV: a `text` column or feature columns `f0..fN`, optional `id`, `gold_answer`
and `meta.<name>` columns. Malformed lines are reported with their numbers and
skipped; the good ones are imported.
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

from strata.cli.connect import target
from strata.cli.progress import ProgressBar
from strata.cli.stack import StackConfig
from strata.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc

CHUNK = 1000


def row_from_record(line: int, record: dict[str, Any], base: Path) -> sampler_pb2.ImportRow:
    """One import row; ValueError says what is wrong with the record."""
    content = common_pb2.ItemContent()
    if record.get("text") not in (None, ""):
        content.text = str(record["text"])
    elif record.get("features") is not None:
        values = record["features"]
        if not isinstance(values, list):
            raise ValueError("features must be a list of numbers")
        content.features.values.extend(float(v) for v in values)
    elif record.get("image"):
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


def read_rows(path: Path, errors: list[tuple[int, str]]) -> Iterator[sampler_pb2.ImportRow]:
    base = path.parent
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


def cmd_import(args: argparse.Namespace, config: StackConfig) -> int:
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
    for line, message in sorted(errors)[:20]:
        print(f"  line {line}: {message}")
    if len(errors) > 20:
        print(f"  ... and {len(errors) - 20} more")
    return 0 if not errors else 3


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    imp = sub.add_parser("import", help="import items (JSONL or CSV) into a project's pool")
    imp.add_argument("file")
    imp.add_argument("--project", required=True)
    imp.add_argument("--sampler", help="sampler host:port (default: the running stack's)")
    imp.set_defaults(func=cmd_import)
