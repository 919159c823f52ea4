"""A manager imports items through the console and downloads the export; the routes behind
both refuse a stranger, an annotator, a bad format and a post without its CSRF token."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from strata.cli.reports import write_export
from strata.v1 import common_pb2, quality_pb2, sampler_pb2

from ..marks import ONE_RAY_AT_A_TIME
from .support import Project, Stack, bearer, label, make_project, shoot, sign_in, until

pytestmark = ONE_RAY_AT_A_TIME  # the stack's training service runs a local Ray

PEOPLE = {
    "dx-ann": common_pb2.ROLE_ANNOTATOR,
    "dx-mgr": common_pb2.ROLE_MANAGER,
}
DECIDED = 3


@pytest.fixture(scope="module")
def decided(stack: Stack) -> tuple[Project, dict[str, str]]:
    """A project whose three items one annotator labelled (overlap 1): each decided."""
    project = make_project(stack, PEOPLE, items=DECIDED, overlap=1, threshold=0.5)
    labelled = {}
    for n in range(DECIDED):
        value = ("cat", "dog")[n % 2]
        labelled[label(stack, project, "dx-ann", value)] = value
    manager = bearer(project.tokens["dx-mgr"])

    def all_decided() -> bool:
        states = (
            stack.quality()
            .ProjectProgress(
                quality_pb2.ProjectProgressRequest(project=project.name), metadata=manager
            )
            .items_by_state
        )
        return states["accepted"] + states["expert"] == DECIDED

    until(all_decided, 90, "the three labelled items to be decided")
    return project, labelled


def console(page: Any, stack: Stack, project: Project) -> None:
    sign_in(page, stack, project.tokens["dx-mgr"])
    page.goto(f"{stack.web}/projects/{project.name}/console")
    page.wait_for_selector("#import-form")


def pool_counts(stack: Stack, project: Project) -> dict[str, int]:
    reply = stack.sampler().PoolStats(
        sampler_pb2.PoolStatsRequest(project=project.name, counts_only=True),
        metadata=bearer(project.tokens["dx-mgr"]),
    )
    return dict(reply.items_by_state)


def test_a_manager_imports_items_and_is_shown_each_refused_line_by_number(
    stack: Stack, decided: tuple[Project, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    project, _ = decided
    lines = [
        json.dumps({"id": "up-1", "text": "the tabby cat naps on a sunny windowsill"}),
        json.dumps({"id": "up-2", "text": "a beagle chases the red ball across the park"}),
        "{this line is not JSON",
        json.dumps({"id": "up-3", "text": "kittens tangle the yarn under the kitchen table"}),
        json.dumps({"id": "up-4", "image": "/etc/hostname"}),  # a path on the server: refused
        json.dumps(
            {"id": "up-5", "text": "a sheepdog herds sheep up the hill", "gold_answer": "dog"}
        ),
    ]
    upload = tmp_path / "new-items.jsonl"
    upload.write_text("\n".join(lines) + "\n")
    before = pool_counts(stack, project)

    page = browser.new_page()
    console(page, stack, project)
    page.set_input_files("#import-file", str(upload))
    page.focus("#import-file")
    page.keyboard.press("Tab")  # to Import
    page.keyboard.press("Enter")
    page.wait_for_selector("#import-result:not([hidden])", timeout=60_000)
    shoot(page, "console-import")

    def count(key: str) -> str:
        return str(page.locator(f'#import-counts [data-count="{key}"] .n').inner_text())

    assert count("imported") == "3" and count("gold") == "1" and count("rejected") == "2"
    status = page.locator("#import-status").inner_text()
    assert "new-items.jsonl: 3 imported, 2 lines refused" in status, status
    refused = page.locator("#import-errors tbody tr")
    assert refused.count() == 2
    assert refused.nth(0).locator("th").inner_text() == "3"
    assert refused.nth(1).locator("th").inner_text() == "5"
    assert "image_base64" in refused.nth(1).inner_text()
    # The sampler holds them: three more items to label, one more gold item.
    after = until(
        lambda: (
            counts
            if (counts := pool_counts(stack, project)).get("gold", 0) == before.get("gold", 0) + 1
            else None
        ),
        30,
        "the imported gold item in the sampler's counts",
    )
    stages = ("pool", "inflight", "review", "labeled")
    imported = sum(after.get(s, 0) for s in stages)
    assert imported == sum(before.get(s, 0) for s in stages) + 3


def test_a_manager_imports_answers_and_predictions_from_elsewhere(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    # A project of its own: the answers imported here would be votes in the others'.
    project = make_project(stack, {"dx-imports-mgr": common_pb2.ROLE_MANAGER}, items=3)
    answers = tmp_path / "vendor.csv"
    answers.write_text("item,annotator,value\nt0,vendor-a,cat\nt0,vendor-b,cow\nt1,vendor-a,dog\n")
    page = browser.new_page()
    sign_in(page, stack, project.tokens["dx-imports-mgr"])
    page.goto(f"{stack.web}/projects/{project.name}/console")
    page.wait_for_selector("#import-form")

    def count(key: str) -> str:
        return str(page.locator(f'#import-counts [data-count="{key}"] .n').inner_text())

    page.select_option("#import-kind", "annotations")
    assert page.locator("#import-model-field").is_hidden()
    page.set_input_files("#import-file", str(answers))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#import-result:not([hidden])", timeout=60_000)
    assert count("imported") == "2" and count("rejected") == "1" and count("items") == "2"
    refused = page.locator("#import-errors tbody tr")
    assert refused.nth(0).locator("th").inner_text() == "3"
    assert "'cow' is not a class" in refused.nth(0).inner_text()
    with psycopg.connect(stack.pg_dsn) as conn:
        votes = conn.execute(
            "SELECT annotator_id, value FROM quality.votes WHERE project = %s "
            "AND annotator_id LIKE 'ext:%%' ORDER BY 1, 2",
            (project.name,),
        ).fetchall()
    assert votes == [("ext:vendor-a", "cat"), ("ext:vendor-a", "dog")]

    predictions = tmp_path / "vendor.jsonl"
    predictions.write_text(json.dumps({"item": "t2", "value": "dog", "confidence": 0.8}) + "\n")
    page.select_option("#import-kind", "predictions")
    page.set_input_files("#import-file", str(predictions))
    page.get_by_role("button", name="Import").click()
    assert "name the model" in page.locator("#import-status").inner_text()
    page.fill("#import-model", "vendor-bert")
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("#import-result:not([hidden])", timeout=60_000)
    assert count("imported") == "1" and count("rejected") == "0"
    shoot(page, "console-import-predictions")


def test_a_manager_downloads_the_export_as_quality_streams_it(
    stack: Stack, decided: tuple[Project, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    project, labelled = decided
    page = browser.new_page()
    console(page, stack, project)
    assert page.locator("#export-count strong").inner_text() == str(DECIDED)
    shoot(page, "console-export")

    with page.expect_download() as jsonl:
        page.get_by_role("button", name="Download").click()
    download = jsonl.value
    assert download.suggested_filename == f"{project.name}-labels.jsonl"
    body = Path(download.path()).read_bytes()
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert {r["item_id"]: r["value"] for r in rows} == labelled
    assert all(r["project"] == project.name and r["status"] == "accepted" for r in rows)
    assert all([v["annotator_id"] for v in r["votes"]] == ["dx-ann"] for r in rows)
    # Byte for byte what quality streams to the CLI.
    cli = tmp_path / "cli.jsonl"
    write_export(stack.quality(), bearer(project.tokens["dx-mgr"]), project.name, "jsonl", cli)
    assert body == cli.read_bytes()

    # CSV, chosen by keyboard: its header comes once, then a line per item.
    page.get_by_label("CSV").focus()
    page.keyboard.press("Space")
    with page.expect_download() as table:
        page.get_by_role("button", name="Download").press("Enter")
    assert table.value.suggested_filename == f"{project.name}-labels.csv"
    text = Path(table.value.path()).read_text()
    records = list(csv.DictReader(io.StringIO(text)))
    assert {r["item_id"]: r["value"] for r in records} == labelled
    assert text.count("item_id") == 1

    # Label Studio: one JSON array, its tasks' annotations the decided values.
    page.get_by_label("Label Studio").check()
    with page.expect_download() as tasks:
        page.get_by_role("button", name="Download").click()
    exported = json.loads(Path(tasks.value.path()).read_text())
    assert len(exported) == DECIDED
    assert tasks.value.suggested_filename == f"{project.name}-labels.label-studio.json"


def test_the_routes_refuse_strangers_annotators_bad_formats_and_forged_posts(
    stack: Stack, decided: tuple[Project, dict[str, str]]
) -> None:
    project, _ = decided
    other = make_project(stack, {"dx-other": common_pb2.ROLE_MANAGER}, items=1)
    export = f"/api/projects/{project.name}/export"
    imports = f"/api/projects/{project.name}/imports/items"
    item = {"file": ("items.jsonl", b'{"text": "a cat"}\n', "application/x-ndjson")}

    def session(client: httpx.Client, token: str) -> dict[str, str]:
        reply = client.post("/api/session", json={"token": token})
        assert reply.status_code == 200, reply.text
        return {"X-CSRF-Token": reply.json()["csrf_token"]}

    with httpx.Client(base_url=stack.web) as client:
        assert client.get(export).status_code == 401  # no session
        csrf = session(client, other.tokens["dx-other"])  # a manager, of another project
        assert client.get(export).status_code == 404
        assert client.post(imports, files=item, headers=csrf).status_code == 404
    with httpx.Client(base_url=stack.web) as client:
        csrf = session(client, project.tokens["dx-ann"])  # a member, not a manager
        assert client.get(export).status_code == 403
        assert client.post(imports, files=item, headers=csrf).status_code == 403
    with httpx.Client(base_url=stack.web) as client:
        csrf = session(client, project.tokens["dx-mgr"])
        bad = client.get(export, params={"format": "xlsx"})
        assert bad.status_code == 400
        assert "jsonl, csv, parquet, label-studio" in bad.json()["error"]
        bad = client.get(export, params={"images": "png"})
        assert bad.status_code == 400 and "base64" in bad.json()["error"]
        forged = client.post(imports, files=item)  # the cookie alone: no CSRF token
        assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
        wrong = client.post(imports, files={"file": ("items.xlsx", b"x", "")}, headers=csrf)
        assert (
            wrong.status_code == 400 and "is not a .csv or .json or .jsonl" in wrong.json()["error"]
        )
        assert client.get(export, params={"format": "parquet"}).content[:4] == b"PAR1"
