"""The console's export download and item import, without servers: fake quality and
sampler stubs stand in (the browser tier runs them against the real stack)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from strata.cli.reports import write_export
from strata.v1 import quality_pb2, sampler_pb2
from strata.web import datasets, imports
from strata.web.app import create_app
from strata.web.backends import Backends
from strata.web.metrics import WebMetrics
from strata.web.session import COOKIE, csrf_token

from .test_web import FakeGateway, FakeRpcError

TOKEN = "good"
CSRF = {"X-CSRF-Token": csrf_token(TOKEN)}


class FakeExport:
    """A server stream as grpc gives it: an iterator that is also the call."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = iter(replies)
        self.cancelled = False

    def __iter__(self) -> FakeExport:
        return self

    def __next__(self) -> quality_pb2.ExportLabelsResponse:
        reply = next(self.replies)
        if isinstance(reply, Exception):
            raise reply
        return reply  # type: ignore[no-any-return]

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeQuality:
    def __init__(self) -> None:
        self.calls: list[tuple[quality_pb2.ExportLabelsRequest, dict[str, str]]] = []
        self.exports: list[FakeExport] = []
        self.fail_midway = False

    def ExportLabels(
        self, request: quality_pb2.ExportLabelsRequest, metadata: Any = (), timeout: float = 0
    ) -> FakeExport:
        self.calls.append((request, dict(metadata)))
        replies: list[Any]
        if request.project != "mine":
            replies = [FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such project")]
        else:
            replies = [
                quality_pb2.ExportLabelsResponse(chunk=b"head\n"),
                quality_pb2.ExportLabelsResponse(chunk=b"row 1\nrow 2\n", records=2),
                quality_pb2.ExportLabelsResponse(chunk=b"row 3\n", records=1),
            ]
            if self.fail_midway:
                replies.insert(2, FakeRpcError(grpc.StatusCode.UNAVAILABLE, "quality went away"))
        self.exports.append(FakeExport(replies))
        return self.exports[-1]


class FakeSampler:
    def __init__(self) -> None:
        self.requests: list[sampler_pb2.ImportItemsRequest] = []
        self.metadata: dict[str, str] = {}

    def ImportItems(
        self,
        requests: Iterator[sampler_pb2.ImportItemsRequest],
        metadata: Any = (),
        timeout: float = 0,
    ) -> sampler_pb2.ImportItemsResponse:
        self.metadata = dict(metadata)
        first = next(requests)
        if first.project != "mine":
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no project {first.project!r}")
        self.requests = [first, *requests]
        rows = [r for q in self.requests for r in q.rows]
        # The sampler refuses one row of its own (say, an empty image), by its line.
        bad = [r for r in rows if r.content.WhichOneof("kind") == "image"]
        return sampler_pb2.ImportItemsResponse(
            received=len(rows),
            imported=len(rows) - len(bad),
            rejected=len(bad),
            errors=[sampler_pb2.RowError(line=r.line, message="not a PNG") for r in bad],
        )


@pytest.fixture
def web() -> tuple[TestClient, FakeQuality, FakeSampler]:
    backends = Backends.__new__(Backends)
    quality, sampler = FakeQuality(), FakeSampler()
    backends.gateway = FakeGateway()  # type: ignore[assignment]
    backends.quality = quality  # type: ignore[assignment]
    backends.sampler = sampler  # type: ignore[assignment]
    client = TestClient(create_app(backends, WebMetrics(), session_ttl_s=3600))
    client.cookies.set(COOKIE, TOKEN)
    return client, quality, sampler


def test_the_export_streams_quality_s_chunks_as_a_named_attachment(
    web: tuple[TestClient, FakeQuality, FakeSampler],
) -> None:
    client, quality, _ = web
    reply = client.get("/api/projects/mine/export", params={"format": "csv", "images": "base64"})
    assert reply.status_code == 200, reply.text
    assert reply.content == b"head\nrow 1\nrow 2\nrow 3\n"
    assert reply.headers["content-type"].startswith("text/csv")
    assert reply.headers["content-disposition"] == 'attachment; filename="mine-labels.csv"'
    request, metadata = quality.calls[-1]
    assert request.format == quality_pb2.EXPORT_FORMAT_CSV and request.inline_images
    assert metadata["authorization"] == f"Bearer {TOKEN}"
    reply = client.get("/api/projects/mine/export", params={"format": "label-studio"})
    assert 'filename="mine-labels.label-studio.json"' in reply.headers["content-disposition"]
    assert not quality.calls[-1][0].inline_images


def test_a_bad_format_is_a_400_that_names_the_good_ones_and_nothing_is_asked(
    web: tuple[TestClient, FakeQuality, FakeSampler],
) -> None:
    client, quality, _ = web
    reply = client.get("/api/projects/mine/export", params={"format": "xlsx"})
    assert reply.status_code == 400
    assert "jsonl, csv, parquet, label-studio" in reply.json()["error"]
    reply = client.get("/api/projects/mine/export", params={"images": "png"})
    assert reply.status_code == 400 and "base64" in reply.json()["error"]
    assert quality.calls == []


def test_a_refused_export_is_its_status_and_a_page_for_a_browser_navigation(
    web: tuple[TestClient, FakeQuality, FakeSampler],
) -> None:
    client, _, _ = web
    reply = client.get("/api/projects/theirs/export")
    assert reply.status_code == 404 and reply.json()["error"] == "no such project"
    page = client.get("/api/projects/theirs/export", headers={"Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "no such project" in page.text


def test_an_export_cut_short_is_not_passed_off_as_whole(
    web: tuple[TestClient, FakeQuality, FakeSampler],
) -> None:
    client, quality, _ = web
    quality.fail_midway = True
    with pytest.raises(datasets.ExportInterrupted):
        client.get("/api/projects/mine/export")
    assert quality.exports[-1].cancelled


def test_write_export_writes_the_chunks_and_counts_the_records(tmp_path: Path) -> None:
    quality = FakeQuality()
    records = write_export(
        quality, [("authorization", "Bearer x")], "mine", "parquet", tmp_path / "o"
    )  # type: ignore[arg-type]
    assert records == 3 and (tmp_path / "o").read_bytes() == b"head\nrow 1\nrow 2\nrow 3\n"
    assert quality.calls[0][0].format == quality_pb2.EXPORT_FORMAT_PARQUET


def upload(client: TestClient, project: str, name: str, data: bytes, **kw: Any) -> Any:
    return client.post(
        f"/api/projects/{project}/imports/items",
        files={"file": (name, data, "application/octet-stream")},
        headers=kw.get("headers", CSRF),
    )


def test_an_import_sends_the_good_rows_and_names_every_bad_line(
    web: tuple[TestClient, FakeQuality, FakeSampler], tmp_path: Path
) -> None:
    client, _, sampler = web
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for the browser")
    lines = [
        json.dumps({"text": "a cat", "id": "x1", "metadata": {"src": "web"}}),
        "not json",
        json.dumps({"image": str(secret)}),  # a path on the web's disk is never read
        "",
        json.dumps({"image": "secret.png", "text": ""}),
        json.dumps({"image_base64": "aGVsbG8="}),
        json.dumps({"features": [1, 2.5]}),
        json.dumps({"nothing": 1}),
        json.dumps({"data": {"image": str(secret)}}),
    ]
    reply = upload(client, "mine", "items.jsonl", ("\r\n".join(lines) + "\r\n").encode())
    assert reply.status_code == 200, reply.text
    out = reply.json()
    rows = [r for q in sampler.requests for r in q.rows]
    assert [r.line for r in rows] == [1, 6, 7]
    assert rows[0].external_id == "x1" and dict(rows[0].metadata) == {"src": "web"}
    assert not any(r.content.image.png == b"not for the browser" for r in rows)
    assert sampler.metadata["authorization"] == f"Bearer {TOKEN}"
    assert {q.project for q in sampler.requests} == {"mine"}
    assert out["imported"] == 2 and out["received"] == 3 and out["rejected"] == 6
    assert [e["line"] for e in out["errors"]] == [2, 3, 5, 6, 8, 9]
    assert "image_base64" in out["errors"][1]["message"]
    assert out["errors"][3]["message"] == "not a PNG"


def test_a_csv_import_reads_text_and_feature_columns(
    web: tuple[TestClient, FakeQuality, FakeSampler],
) -> None:
    client, _, sampler = web
    data = b'id,text,gold_answer,meta.src\nc1,"a cat, sleeping",,web\nc2,,,\nc3,a dog,dog,\n'
    out = upload(client, "mine", "Items.CSV", data).json()
    rows = [r for q in sampler.requests for r in q.rows]
    assert [(r.line, r.content.text, r.gold_answer) for r in rows] == [
        (2, "a cat, sleeping", ""),
        (4, "a dog", "dog"),
    ]
    assert dict(rows[0].metadata) == {"src": "web"}
    assert [e["line"] for e in out["errors"]] == [3]


def test_an_import_is_refused_before_the_sampler_when_it_cannot_be_one(
    web: tuple[TestClient, FakeQuality, FakeSampler], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, sampler = web
    assert upload(client, "mine", "items.jsonl", b"{}", headers={}).status_code == 403  # no CSRF
    reply = upload(client, "mine", "items.xlsx", b"{}")
    assert reply.status_code == 400 and "is not a .csv or .json or .jsonl" in reply.json()["error"]
    reply = upload(client, "mine", "items.jsonl", b'{"text": "caf\xe9"}\n')
    assert reply.status_code == 400 and "UTF-8" in reply.json()["error"]
    model = client.post(
        "/api/projects/mine/imports/predictions",
        files={"file": ("p.jsonl", b"{}", "application/octet-stream")},
        headers=CSRF,
    )
    assert model.status_code == 400 and "name the model" in model.json()["error"]
    unknown = client.post(
        "/api/projects/mine/imports/labels",
        files={"file": ("p.jsonl", b"{}", "application/octet-stream")},
        headers=CSRF,
    )
    assert unknown.status_code == 404
    reply = client.post("/api/projects/mine/imports/items", json={"file": "x"}, headers=CSRF)
    assert reply.status_code == 415
    monkeypatch.setattr(imports, "MAX_UPLOAD_BYTES", 100)
    reply = upload(client, "mine", "items.jsonl", b'{"text": "a cat"}\n' * 20)
    assert reply.status_code == 413 and "strata import" in reply.json()["error"]
    assert sampler.requests == []


def test_label_studio_tasks_import_but_never_read_a_path_on_the_server(
    web: tuple[TestClient, FakeQuality, FakeSampler],
) -> None:
    client, _, sampler = web
    tasks = (
        b'[\n  {"id": 1, "data": {"image": "/etc/hostname"}},\n'
        b'  {"id": 2, "data": {"text": "a"}}\n]'
    )
    out = upload(client, "mine", "tasks.json", tasks).json()
    rows = [r for q in sampler.requests for r in q.rows]
    assert [(r.line, r.external_id, r.content.text) for r in rows] == [(3, "2", "a")]
    assert [e["line"] for e in out["errors"]] == [2]
    assert "file path" in out["errors"][0]["message"]


def test_an_empty_file_still_names_its_project_so_a_stranger_is_refused(
    web: tuple[TestClient, FakeQuality, FakeSampler],
) -> None:
    client, _, sampler = web
    assert upload(client, "theirs", "items.jsonl", b"").status_code == 404
    out = upload(client, "mine", "items.jsonl", b"\n\n").json()
    assert [q.project for q in sampler.requests] == ["mine"] and out["imported"] == 0


def test_rows_go_in_messages_bounded_in_count_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "upload.jsonl"
    big = "x" * 300_000
    path.write_text("".join(json.dumps({"text": f"{big}{i}"}) + "\n" for i in range(20)))
    errors: list[tuple[int, str]] = []
    messages = list(imports.messages(imports.KINDS["items"], "mine", path, errors, {}))
    assert sum(len(m.rows) for m in messages) == 20 and len(messages) > 1
    assert all(m.ByteSize() < 4 * 1024 * 1024 for m in messages) and errors == []
