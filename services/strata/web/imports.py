"""The console's imports, as the signed-in person: a file uploaded from the browser is
read as `strata import` reads it and streamed to the service that owns it.

- items (JSONL, CSV, Label Studio tasks): the sampler's ImportItems;
- annotations (CSV `item,annotator,value`, a Label Studio export): quality's ImportVotes;
- predictions (JSONL `item,value,confidence`, Label Studio): inference's ImportPredictions.

The services decide who may (a manager of the project, or an admin; a non-member gets
404). The upload goes to a temporary file (the readers report lines by number) and from
there to the service a message at a time. An uploaded file never makes the web read
another file: image paths in it are refused, line by line.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from google.protobuf.message import Message
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from strata.cli.import_annotations import read_votes
from strata.cli.import_predictions import read_predictions
from strata.cli.importer import read_rows
from strata.v1 import inference_pb2, quality_pb2, sampler_pb2
from strata.web.backends import BackendError, Backends, Person, http_error

IMPORT_TIMEOUT_S = 1800.0
# A browser upload is a file someone picked; bigger ones go through `strata import`. The
# web's /tmp (an emptyDir of 256 Mi on Kubernetes) holds it twice while it is read.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# Rows per message: bounded in count and in bytes (inline images), so a message stays
# well under gRPC's 4 MB.
ROWS_PER_MESSAGE = 1000
BYTES_PER_MESSAGE = 2 * 1024 * 1024
MAX_ERRORS = 1000
MAX_MODEL_NAME = 120

Errors = list[tuple[int, str]]


@dataclass(frozen=True)
class ImportKind:
    """One kind of import: the files it takes (upload suffix -> the suffix its reader
    goes by), how to read them, how to wrap rows into messages, and which call."""

    name: str
    suffixes: dict[str, str]
    described: str
    read: Callable[[Path, Errors, dict[str, str]], Iterator[Any]]
    message: Callable[[str, Sequence[Any], dict[str, str]], Message]
    call: Callable[[Backends], Callable[..., Any]]
    counts: tuple[str, ...]


KINDS = {
    "items": ImportKind(
        "items",
        {".jsonl": ".jsonl", ".ndjson": ".jsonl", ".csv": ".csv", ".json": ".json"},
        "items come as JSON lines (.jsonl), CSV with a header (.csv) or Label Studio tasks (.json)",
        lambda path, errors, _: read_rows(path, errors, image_files=False),
        lambda project, rows, _: sampler_pb2.ImportItemsRequest(project=project, rows=rows),
        lambda b: b.sampler.ImportItems,
        ("received", "imported", "gold", "exact_duplicates", "near_duplicates"),
    ),
    "annotations": ImportKind(
        "annotations",
        {".csv": ".csv", ".json": ".json"},
        "answers come as CSV with the header item,annotator,value (.csv) or a Label "
        "Studio export (.json)",
        lambda path, errors, _: read_votes(path, errors),
        lambda project, rows, _: quality_pb2.ImportVotesRequest(project=project, votes=rows),
        lambda b: b.quality.ImportVotes,
        ("received", "imported", "already", "gold", "items", "accepted"),
    ),
    "predictions": ImportKind(
        "predictions",
        {".jsonl": ".jsonl", ".ndjson": ".jsonl", ".json": ".json"},
        "predictions come as JSON lines of item, value, confidence (.jsonl) or Label "
        "Studio tasks with predictions (.json)",
        lambda path, errors, params: read_predictions(path, errors, params["model"]),
        lambda project, rows, params: inference_pb2.ImportPredictionsRequest(
            project=project, model=params["model"], rows=rows
        ),
        lambda b: b.inference.ImportPredictions,
        ("received", "imported", "already"),
    ),
}


def too_big() -> BackendError:
    """The refusal of an upload past MAX_UPLOAD_BYTES."""
    return BackendError(
        413,
        f"that file is over {MAX_UPLOAD_BYTES // 2**20} MiB: split it, or import it with "
        "the strata import command",
        "TOO_LARGE",
    )


async def _capped(stream: Any) -> Any:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > MAX_UPLOAD_BYTES:
            raise too_big()
        yield chunk


async def receive_upload(request: Request) -> UploadFile:
    """The form's `file`, spooled by Starlette, refused past MAX_UPLOAD_BYTES."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BackendError(
            415, 'send the file as multipart/form-data, in a field named "file"', "CONTENT_TYPE"
        )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
        raise too_big()
    parser = MultiPartParser(request.headers, _capped(request.stream()), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BackendError(400, f"that upload is not a readable form: {exc.message}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        await form.close()
        raise BackendError(400, 'the form has no file: send it in a field named "file"')
    return upload


def upload_suffix(kind: ImportKind, filename: str) -> str:
    """What the reader must read the file as (it goes by the suffix)."""
    suffix = kind.suffixes.get(Path(filename).suffix.lower())
    if suffix is None:
        raise BackendError(
            400,
            f"{filename or 'that file'!r} is not a {' or '.join(sorted(set(kind.suffixes)))} "
            f"file: {kind.described}",
            "INVALID_ARGUMENT",
        )
    return suffix


def check_params(kind: ImportKind, params: dict[str, str]) -> None:
    if kind.name != "predictions":
        return
    model = params.get("model", "").strip()
    if not model or len(model) > MAX_MODEL_NAME:
        raise BackendError(
            400,
            "name the model the predictions came from (its version, at most "
            f"{MAX_MODEL_NAME} characters)",
            "INVALID_ARGUMENT",
        )
    params["model"] = model


def save_upload(source: IO[bytes], target: Path) -> None:
    """`source` as `target` (the same bytes, so the same line numbers), checked to be
    UTF-8 text."""
    source.seek(0)
    # newline="" both ways: lines split as the readers split them, and written untouched.
    text = io.TextIOWrapper(source, encoding="utf-8", newline="")
    try:
        with target.open("w", encoding="utf-8", newline="") as sink:
            for raw in text:
                sink.write(raw)
    except UnicodeDecodeError:
        raise BackendError(
            400, "the file is not UTF-8 text: save it as UTF-8 and try again", "INVALID_ARGUMENT"
        ) from None
    finally:
        text.detach()


def messages(
    kind: ImportKind, project: str, path: Path, errors: Errors, params: dict[str, str]
) -> Iterator[Message]:
    """The file's rows as messages; the first always goes, even empty, so the service
    hears which project it is (and refuses a non-member). A file that cannot be read on
    ends the stream there, with an error that says where."""
    rows: list[Any] = []
    size = 0
    sent = False
    last = 0
    try:
        for row in kind.read(path, errors, params):
            last = row.line
            rows.append(row)
            size += row.ByteSize()
            if len(rows) >= ROWS_PER_MESSAGE or size >= BYTES_PER_MESSAGE:
                yield kind.message(project, rows, params)
                sent, rows, size = True, [], 0
    except Exception as exc:  # csv.Error, a field too large: whatever stops the reading
        last = max([last, *(line for line, _ in errors)])
        errors.append((0, f"reading the file stopped after line {last}: {exc}"))
    if rows or not sent:
        yield kind.message(project, rows, params)


def run_import(
    backends: Backends,
    kind: ImportKind,
    project: str,
    path: Path,
    params: dict[str, str],
    me: Person,
) -> dict[str, Any]:
    """Stream the saved upload to its service as `me`; what went in and what was refused."""
    errors: Errors = []
    try:
        reply = kind.call(backends)(
            messages(kind, project, path, errors, params),
            metadata=me.metadata(),
            timeout=IMPORT_TIMEOUT_S,
        )
    except grpc.RpcError as exc:
        raise http_error(exc) from None
    local = len(errors)
    errors.extend((e.line, e.message) for e in reply.errors)
    out: dict[str, Any] = {name: getattr(reply, name) for name in kind.counts}
    out["rejected"] = local + reply.rejected
    out["errors"] = [{"line": ln, "message": m} for ln, m in sorted(errors)[:MAX_ERRORS]]
    return out


def receive_and_import(
    backends: Backends,
    kind: ImportKind,
    project: str,
    upload: UploadFile,
    params: dict[str, str],
    me: Person,
) -> dict[str, Any]:
    """Save the upload where its reader can read it, then import it (a worker thread)."""
    check_params(kind, params)
    suffix = upload_suffix(kind, upload.filename or "")
    with tempfile.TemporaryDirectory(prefix="strata-import-") as folder:
        path = Path(folder) / f"upload{suffix}"
        save_upload(upload.file, path)
        return run_import(backends, kind, project, path, params, me)
