"""`strata import annotations --project P FILE`: answers gathered elsewhere, as votes.

CSV with the header `item,annotator,value` (optional `duration_ms`, `submitted_at`):
`item` is the item's external id, `annotator` a name in the source. Or a Label Studio
export (JSON array of tasks): each annotation is one answer, its task's
`data.external_id` (or its id) names the item. Quality stores each answer as a vote
of "ext:<annotator>", scores gold, and decides the items once the file is in.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from strata.cli import label_studio
from strata.cli.connect import target
from strata.cli.progress import ProgressBar, report_refused
from strata.cli.stack import StackConfig
from strata.v1 import quality_pb2, quality_pb2_grpc

CHUNK = 2000
REQUIRED = ("item", "annotator", "value")


def _vote(
    line: int, item: str, annotator: str, value: str, duration_ms: str | int, at: str
) -> quality_pb2.ImportedVote:
    """One answer; ValueError says what is wrong with its fields."""
    vote = quality_pb2.ImportedVote(
        line=line, item=item.strip(), annotator=annotator.strip(), value=value.strip()
    )
    if duration_ms not in (None, ""):
        try:
            vote.duration_ms = int(float(duration_ms))
        except ValueError:
            raise ValueError(f"duration_ms {duration_ms!r} is not a number") from None
    if at:
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"submitted_at {at!r} is not an ISO 8601 time") from None
        stamp = Timestamp()
        stamp.FromDatetime(when)
        vote.submitted_at.CopyFrom(stamp)
    return vote


def read_csv(path: Path, errors: list[tuple[int, str]]) -> Iterator[quality_pb2.ImportedVote]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            errors.append(
                (1, f"the header needs {', '.join(REQUIRED)}; missing {', '.join(missing)}")
            )
            return
        reader.fieldnames = header
        for line, rec in enumerate(reader, start=2):
            if None in rec or any(rec.get(c) is None for c in REQUIRED):
                errors.append((line, f"expected {len(header)} fields"))
                continue
            try:
                yield _vote(
                    line,
                    rec["item"],
                    rec["annotator"],
                    rec["value"],
                    rec.get("duration_ms") or "",
                    (rec.get("submitted_at") or "").strip(),
                )
            except ValueError as exc:
                errors.append((line, str(exc)))


def read_label_studio(
    path: Path, errors: list[tuple[int, str]]
) -> Iterator[quality_pb2.ImportedVote]:
    for line, task in label_studio.tasks(path.read_text(encoding="utf-8")):
        if isinstance(task, str):
            errors.append((line, task))
            continue
        try:
            item = label_studio.external_id(task)
        except ValueError as exc:
            errors.append((line, str(exc)))
            continue
        for answer in label_studio.answers(task):
            if isinstance(answer, str):
                errors.append((line, answer))
                continue
            try:
                yield _vote(
                    line,
                    item,
                    answer.annotator,
                    answer.value,
                    answer.duration_ms,
                    answer.created_at,
                )
            except ValueError as exc:
                errors.append((line, str(exc)))


def read_votes(path: Path, errors: list[tuple[int, str]]) -> Iterator[quality_pb2.ImportedVote]:
    """The file's answers; what cannot be read goes to `errors` with its line number."""
    if label_studio.is_task_array(path):
        return read_label_studio(path, errors)
    return read_csv(path, errors)


def cmd_import_annotations(args: argparse.Namespace, config: StackConfig) -> int:
    """Stream FILE's answers to quality; print what was imported, repeated or rejected."""
    path = Path(args.file)
    if not path.exists():
        print(f"strata import annotations: no such file: {path}")
        return 1
    errors: list[tuple[int, str]] = []
    with path.open("rb") as f:
        lines = sum(1 for _ in f)
    bar = ProgressBar("importing answers (lines)", max(1, lines))

    def requests() -> Iterator[quality_pb2.ImportVotesRequest]:
        chunk: list[quality_pb2.ImportedVote] = []
        for vote in read_votes(path, errors):
            chunk.append(vote)
            if len(chunk) >= CHUNK:
                yield quality_pb2.ImportVotesRequest(project=args.project, votes=chunk)
                bar.update(vote.line)
                chunk = []
        # Even an empty file opens the stream: the project is checked, and a rerun after
        # an interrupted import still decides the items.
        yield quality_pb2.ImportVotesRequest(project=args.project, votes=chunk)

    quality = target(config, "quality", args.quality or "", "a project manager's or admin's")
    with quality.channel() as channel:
        try:
            reply = quality_pb2_grpc.QualityStub(channel).ImportVotes(
                requests(), metadata=quality.metadata, timeout=3600
            )
        except grpc.RpcError as exc:
            bar.close()
            print(f"strata import annotations: {exc.code().name}: {exc.details()}")
            return 1
    bar.update(max(1, lines))
    bar.close()
    errors.extend((e.line, e.message) for e in reply.errors)
    rejected = len(errors) - len(reply.errors) + reply.rejected
    print(
        f"{reply.imported} answers imported ({reply.gold} on gold items), {reply.already} "
        f"imported before, {rejected} rejected; {reply.items} items, {reply.accepted} accepted"
    )
    report_refused(errors, rejected)
    return 0 if not rejected else 3
