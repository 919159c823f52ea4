"""The console's dataset routes, as the signed-in person: the export of a project's decided
items, streamed from quality to the browser as a download, and the imports (module
`imports`): items, answers gathered elsewhere, an outside model's predictions.

The services decide who may (quality's ExportLabels and the imports are a manager's or
an admin's; a non-member gets 404). Neither direction holds a whole file in memory: the
export passes on one chunk at a time, an upload goes to a temporary file and from there
to its service a message at a time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio.to_thread
import grpc
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from strata.common.exports import EXPORT_FORMATS, export_labels
from strata.v1 import quality_pb2
from strata.web.api import ERRORS, ErrorOut, Me
from strata.web.backends import BackendError, Backends, Person, http_error
from strata.web.imports import (
    KINDS,
    MAX_ERRORS,
    MAX_MODEL_NAME,
    MAX_UPLOAD_BYTES,
    receive_and_import,
    receive_upload,
)
from strata.web.pages import error_page

log = logging.getLogger(__name__)

IMAGES = ("uri", "base64")
# The whole export is one call: a slow browser holds it open as long as it reads.
EXPORT_TIMEOUT_S = 3600.0


class ImportLineErrorOut(BaseModel):
    line: int = Field(description="the line (CSV: the record) in the file; 0: the whole file")
    message: str


class ImportOut(BaseModel):
    """What an import did; each kind fills its own counts."""

    received: int = Field(description="rows the service received")
    imported: int = Field(description="new items, answers or predictions stored")
    rejected: int = Field(description="lines refused, here or by the service")
    errors: list[ImportLineErrorOut] = Field(description=f"the first {MAX_ERRORS}, by line")
    gold: int | None = Field(None, description="items: gold rows; annotations: answers on gold")
    exact_duplicates: int | None = Field(None, description="items: exact copies set aside")
    near_duplicates: int | None = Field(None, description="items: near copies set aside")
    already: int | None = Field(
        None, description="annotations, predictions: imported before (nothing changed)"
    )
    items: int | None = Field(None, description="annotations: items with imported answers")
    accepted: int | None = Field(
        None, description="annotations: of those, accepted once the file was in"
    )


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the file, as `strata import` reads it (items: "
                            ".jsonl, .csv or Label Studio .json; annotations: .csv or a "
                            "Label Studio export; predictions: .jsonl or Label Studio "
                            f".json); at most {MAX_UPLOAD_BYTES // 2**20} MiB",
                        }
                    },
                }
            }
        },
    }
}


# -- export ----------------------------------------------------------------------------------


def attachment(project: str, suffix: str) -> str:
    """The Content-Disposition of a project's export file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", project)
    return f'attachment; filename="{safe}-labels{suffix}"'


def stream_export(
    backends: Backends, project: str, fmt: str, images: str, me: Person
) -> StreamingResponse:
    """The export as a download: quality's first chunk is awaited here, so a refusal is
    still an HTTP status; the rest is passed on as it comes."""
    if fmt not in EXPORT_FORMATS:
        raise BackendError(
            400, f"format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}", "INVALID_ARGUMENT"
        )
    if images not in IMAGES:
        raise BackendError(
            400,
            f"images {images!r} is not uri (a link, or a data: URI for a stored PNG) or "
            "base64 (the picture inline)",
            "INVALID_ARGUMENT",
        )
    call = export_labels(
        backends.quality,
        me.metadata(),
        project,
        fmt,
        inline_images=images == "base64",
        timeout=EXPORT_TIMEOUT_S,
    )
    try:
        first = next(call, None)
    except grpc.RpcError as exc:
        raise http_error(exc) from None
    export = EXPORT_FORMATS[fmt]
    return StreamingResponse(
        _chunks(call, first, project),
        media_type=export.media_type,
        headers={"Content-Disposition": attachment(project, export.suffix)},
    )


class ExportInterrupted(Exception):
    """Quality stopped mid-export: the response is cut off, so the browser marks the
    download failed rather than keep a file that looks whole."""


def _chunks(
    call: Iterator[quality_pb2.ExportLabelsResponse],
    first: quality_pb2.ExportLabelsResponse | None,
    project: str,
) -> Iterator[bytes]:
    try:
        if first is not None and first.chunk:
            yield first.chunk
        for reply in call:
            if reply.chunk:
                yield reply.chunk
    except grpc.RpcError as exc:
        log.warning("export of %s stopped: %s", project, http_error(exc).message)
        raise ExportInterrupted(project) from None
    finally:
        # A browser that went away ends the call too.
        call.cancel()  # type: ignore[attr-defined]


# -- routes ----------------------------------------------------------------------------------


def build_dataset_router(backends: Backends) -> APIRouter:
    """The export download and the item import, under /api/projects/{project}."""
    api = APIRouter(prefix="/api/projects/{project}", responses=ERRORS, tags=["console"])

    @api.get(
        "/export",
        summary="Export the decided items",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {f.media_type: {} for f in EXPORT_FORMATS.values()},
                "description": "the file, as an attachment",
            }
        },
    )
    def export(
        project: str,
        request: Request,
        me: Me,
        fmt: str = Query(
            "jsonl",
            alias="format",
            description="jsonl, csv, parquet or label-studio (docs/export.md)",
            json_schema_extra={"enum": list(EXPORT_FORMATS)},
        ),
        images: str = Query(
            "uri",
            description="uri: a link (a data: URI for a stored PNG); base64: the picture inline",
            json_schema_extra={"enum": list(IMAGES)},
        ),
    ) -> Response:
        """The project's decided items with their votes and provenance, as a download
        (quality's ExportLabels, streamed as it reads)."""
        try:
            return stream_export(backends, project, fmt, images, me)
        except BackendError as exc:
            if request.headers.get("sec-fetch-mode") == "navigate":
                # The console's Download button: a page to read, not JSON.
                return error_page(request, exc.status, exc.message)
            raise

    @api.post(
        "/imports/{kind}",
        summary="Import items, annotations or predictions",
        response_model=ImportOut,
        response_model_exclude_none=True,
        responses={413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
        openapi_extra=UPLOAD_BODY,
    )
    async def import_file(
        project: str,
        kind: str,
        request: Request,
        me: Me,
        model: str = Query(
            "", max_length=MAX_MODEL_NAME, description="predictions: the model they came from"
        ),
    ) -> dict[str, Any]:
        """Import a file as `strata import` reads it: items into the pool (sampler),
        answers gathered elsewhere as votes (quality), or an outside model's predictions
        as pre-labels (inference). What went in, and each refused line by number
        (docs/import.md)."""
        what = KINDS.get(kind)
        if what is None:
            raise BackendError(
                404, f"nothing to import as {kind!r}: items, annotations or predictions"
            )
        upload = await receive_upload(request)
        try:
            return await anyio.to_thread.run_sync(
                partial(receive_and_import, backends, what, project, upload, {"model": model}, me)
            )
        finally:
            await upload.close()

    return api
