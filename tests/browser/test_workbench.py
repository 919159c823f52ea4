"""An annotator's day in the browser: sign in, label by keyboard, reload, lose nothing;
and what the web refuses: no session, no CSRF token, another project."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
import pytest
from strata.v1 import common_pb2

from ..marks import ONE_RAY_AT_A_TIME
from .support import Project, Stack, make_project, shoot

pytestmark = ONE_RAY_AT_A_TIME  # the stack's training service runs a local Ray


@pytest.fixture(scope="module")
def project(stack: Stack) -> Project:
    return make_project(
        stack,
        {
            "ann": common_pb2.ROLE_ANNOTATOR,
            "ann2": common_pb2.ROLE_ANNOTATOR,
            "ann3": common_pb2.ROLE_ANNOTATOR,
        },
        items=60,
    )


@pytest.fixture(scope="module")
def other(stack: Stack) -> Project:
    return make_project(stack, {"outsider": common_pb2.ROLE_ANNOTATOR}, items=2)


def sign_in(page: Any, stack: Stack, token: str) -> None:
    page.goto(f"{stack.web}/signin")
    shoot(page, "signin")
    page.keyboard.type(token)  # the token field has the focus
    page.keyboard.press("Enter")
    page.wait_for_url(f"{stack.web}/projects")


def labels_of(stack: Stack, annotator: str) -> list[tuple[str, str, int, int, str]]:
    with psycopg.connect(stack.pg_dsn) as conn:
        return conn.execute(
            "SELECT task_id::text, value, duration_ms, active_ms, client_label_id "
            "FROM gateway.labels WHERE annotator_id = %s ORDER BY submitted_at",
            (annotator,),
        ).fetchall()


def right_key(page: Any) -> str:
    text = page.locator("#item .item-text").inner_text()
    return "1" if text.startswith("a cat") else "2"


def test_an_annotator_labels_twenty_tasks_by_keyboard_alone(
    stack: Stack, project: Project, browser: Any
) -> None:
    page = browser.new_page()
    sign_in(page, stack, project.tokens["ann"])
    shoot(page, "projects")
    # From the projects list to the workbench by keyboard: tab to the project's link.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Label":
            break
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/projects/{project.name}/label")
    page.wait_for_selector("#item .item-text")
    shoot(page, "workbench")
    page.keyboard.press("?")
    assert page.locator("#instructions").is_visible()
    assert "label the animal named first" in page.locator("#instructions").inner_text()
    shoot(page, "workbench-instructions")
    page.keyboard.press("Escape")

    shown: list[str] = []
    waits: list[float] = []
    for n in range(20):
        page.wait_for_selector("#item .item-text")
        text = page.locator("#item .item-text").inner_text()
        shown.append(text)
        page.keyboard.press(right_key(page))
        time.sleep(0.15)  # a person reads before answering: active time to measure
        started = time.perf_counter()
        page.keyboard.press("Enter")
        if n < 19:
            page.wait_for_function(
                "t => document.querySelector('#item .item-text') && "
                "document.querySelector('#item .item-text').textContent !== t",
                arg=text,
            )
            waits.append(time.perf_counter() - started)
    assert len(set(shown)) == 20, "a task was shown twice"
    page.wait_for_selector("#save-state.saved", timeout=30_000)
    assert page.locator("#session-count").inner_text().startswith("20 labeled")
    shoot(page, "workbench-after-20")

    rows = labels_of(stack, "ann")
    assert len(rows) == 20, rows
    assert len({r[0] for r in rows}) == 20 and len({r[4] for r in rows}) == 20
    for task_id, value, duration_ms, active_ms, _ in rows:
        assert value in ("cat", "dog")
        assert 0 < active_ms <= duration_ms, (task_id, active_ms, duration_ms)
    waits.sort()
    print(
        f"next task shown after Enter: median {waits[len(waits) // 2] * 1000:.0f} ms, "
        f"max {waits[-1] * 1000:.0f} ms (browser round trip included)"
    )


def test_a_reload_mid_task_loses_nothing(stack: Stack, project: Project, browser: Any) -> None:
    page = browser.new_page()
    sign_in(page, stack, project.tokens["ann2"])
    page.goto(f"{stack.web}/projects/{project.name}/label")
    page.wait_for_selector("#item .item-text")
    # An answer given (on its way to the gateway), then a reload at once.
    first = page.locator("#item .item-text").inner_text()
    page.keyboard.press(right_key(page))
    page.keyboard.press("Enter")
    page.wait_for_function(
        "t => document.querySelector('#item .item-text')?.textContent !== t", arg=first
    )
    # Mid-task: a choice made on the next one, not submitted.
    second = page.locator("#item .item-text").inner_text()
    page.keyboard.press(right_key(page))
    page.reload()
    page.wait_for_selector("#item .item-text")
    assert page.locator("#item .item-text").inner_text() == second, "the task in hand changed"
    assert page.locator(".choice[aria-pressed=true]").count() == 1, "the choice was lost"
    page.keyboard.press("Enter")
    # Offline: answers wait in the outbox, and go when the network is back.
    browser.set_offline(True)
    for _ in range(2):
        text = page.locator("#item .item-text").inner_text()
        page.keyboard.press(right_key(page))
        page.keyboard.press("Enter")
        page.wait_for_function(
            "t => document.querySelector('#item .item-text')?.textContent !== t", arg=text
        )
    page.wait_for_selector("#save-state.unsaved", timeout=20_000)
    shoot(page, "workbench-offline")
    browser.set_offline(False)
    page.wait_for_selector("#save-state.saved", timeout=40_000)
    rows = labels_of(stack, "ann2")
    assert len(rows) == 4, rows
    assert len({r[0] for r in rows}) == 4, "a label was stored twice"


def other_key(page: Any) -> str:
    return "2" if right_key(page) == "1" else "1"


def votes_of(stack: Stack, annotator: str) -> list[tuple[str, int]]:
    with psycopg.connect(stack.pg_dsn) as conn:
        return conn.execute(
            "SELECT value, revision FROM quality.votes WHERE annotator_id = %s "
            "ORDER BY submitted_at",
            (annotator,),
        ).fetchall()


def test_the_last_answer_can_be_changed_before_and_after_it_is_saved(
    stack: Stack, project: Project, browser: Any
) -> None:
    page = browser.new_page()
    sign_in(page, stack, project.tokens["ann3"])
    page.goto(f"{stack.web}/projects/{project.name}/label")
    page.wait_for_selector("#item .item-text")

    def answer(key: str) -> str:
        text = page.locator("#item .item-text").inner_text()
        page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "t => document.querySelector('#item .item-text')?.textContent !== t", arg=text
        )
        return text

    # Saved first, then changed: the label keeps its id and becomes revision 1.
    first = answer(other_key(page))
    page.wait_for_selector("#save-state.saved", timeout=20_000)
    in_hand = page.locator("#item .item-text").inner_text()
    page.keyboard.press("Backspace")
    page.wait_for_selector("#amending:not([hidden])")
    assert page.locator("#item .item-text").inner_text() == first
    shoot(page, "workbench-change-last")
    page.keyboard.press(right_key(page))
    page.keyboard.press("Enter")
    page.wait_for_function(
        "t => document.querySelector('#item .item-text')?.textContent === t", arg=in_hand
    )
    page.wait_for_selector("#save-state.saved", timeout=20_000)
    # Esc leaves a change unmade.
    page.keyboard.press("Backspace")
    page.wait_for_selector("#amending:not([hidden])")
    page.keyboard.press("Escape")
    page.wait_for_selector("#amending[hidden]", state="attached")
    assert page.locator("#item .item-text").inner_text() == in_hand
    # Not yet sent (offline), then changed: one label, with the new value, revision 0.
    browser.set_offline(True)
    second = answer(other_key(page))
    page.keyboard.press("Backspace")
    page.wait_for_selector("#amending:not([hidden])")
    assert page.locator("#item .item-text").inner_text() == second
    page.keyboard.press(right_key(page))
    page.keyboard.press("Enter")
    browser.set_offline(False)
    page.wait_for_selector("#save-state.saved", timeout=40_000)
    rows = labels_of(stack, "ann3")
    assert len(rows) == 2, rows
    assert all(
        v == ("cat" if t.startswith("a cat") else "dog")
        for t, v in zip((first, second), (r[1] for r in rows), strict=True)
    ), rows
    with psycopg.connect(stack.pg_dsn) as conn:
        revisions = conn.execute(
            "SELECT revision FROM gateway.labels WHERE annotator_id = 'ann3' ORDER BY submitted_at"
        ).fetchall()
    assert revisions == [(1,), (0,)]
    # Quality counts the changed answer in place of the first: two votes, right values.
    deadline = time.monotonic() + 30
    while votes_of(stack, "ann3") != [(rows[0][1], 1), (rows[1][1], 0)]:
        assert time.monotonic() < deadline, votes_of(stack, "ann3")
        time.sleep(0.3)


def test_without_a_session_or_csrf_token_the_api_refuses(stack: Stack, project: Project) -> None:
    with httpx.Client(base_url=stack.web) as client:
        assert client.post(f"/api/projects/{project.name}/tasks/next").status_code == 401
        assert client.get("/api/projects").status_code == 401
        bad = client.post("/api/session", json={"token": "not-a-token"})
        assert bad.status_code == 401, bad.text
        assert "not-a-token" not in bad.text
        ok = client.post("/api/session", json={"token": project.tokens["ann"]})
        assert ok.status_code == 200, ok.text
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        csrf = ok.json()["csrf_token"]
        refused = client.post(f"/api/projects/{project.name}/tasks/next")
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.json()["error"]
        served = client.post(
            f"/api/projects/{project.name}/tasks/next", headers={"X-CSRF-Token": csrf}
        )
        assert served.status_code == 200, served.text
        out = client.delete("/api/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        # The signed-out session is revoked, not just forgotten by this client.
        client.cookies.set("strata_session", ok.cookies["strata_session"])
        assert client.get("/api/projects").status_code == 401


def test_a_member_of_one_project_gets_404_on_another(
    stack: Stack, project: Project, other: Project, browser: Any
) -> None:
    page = browser.new_page()
    sign_in(page, stack, other.tokens["outsider"])
    reply = page.goto(f"{stack.web}/projects/{project.name}/label")
    assert reply is not None and reply.status == 404
    shoot(page, "not-found")
    api = page.request.get(f"{stack.web}/api/projects/{project.name}/contract")
    assert api.status == 404
    csrf = page.request.get(f"{stack.web}/api/session").json()["csrf_token"]
    leased = page.request.post(
        f"{stack.web}/api/projects/{project.name}/tasks/next", headers={"X-CSRF-Token": csrf}
    )
    assert leased.status == 404
