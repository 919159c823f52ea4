"""A reviewer decides an item in review; a manager reads the console and blocks someone."""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
import pytest
from strata.v1 import common_pb2, gateway_pb2, quality_pb2

from ..marks import ONE_RAY_AT_A_TIME
from .support import Project, Stack, bearer, label, make_project, shoot, sign_in, until

pytestmark = ONE_RAY_AT_A_TIME  # the stack's training service runs a local Ray

PEOPLE = {
    "rc-ann-a": common_pb2.ROLE_ANNOTATOR,
    "rc-ann-b": common_pb2.ROLE_ANNOTATOR,
    "rc-rev": common_pb2.ROLE_REVIEWER,
    "rc-mgr": common_pb2.ROLE_MANAGER,
}


@pytest.fixture(scope="module")
def disputed(stack: Stack) -> tuple[Project, str]:
    """A project whose one item two annotators disagree on, at its most annotators: quality
    sends it to review."""
    project = make_project(stack, PEOPLE, items=1, overlap=2, threshold=0.8)
    item = label(stack, project, "rc-ann-a", "cat")
    assert label(stack, project, "rc-ann-b", "dog") == item
    quality = stack.quality()
    admin = bearer(stack.admin_token)

    def in_review() -> bool:
        try:
            reply = quality.ItemConsensus(
                quality_pb2.ItemConsensusRequest(item_id=item), metadata=admin
            )
        except grpc.RpcError:
            return False
        return reply.HasField("review")

    until(in_review, 60, "the item to go to review")
    return project, item


def test_a_reviewer_sees_the_evidence_and_decides_by_keyboard(
    stack: Stack, disputed: tuple[Project, str], browser: Any
) -> None:
    project, item = disputed
    page = browser.new_page()
    sign_in(page, stack, project.tokens["rc-rev"])
    page.goto(f"{stack.web}/projects/{project.name}/review")
    page.wait_for_selector("#evidence table.votes")
    evidence = page.locator("#evidence").inner_text()
    assert "In review: disagreement" in evidence
    assert "rc-ann-a" in evidence and "rc-ann-b" in evidence
    shoot(page, "review")
    page.keyboard.press("1")  # accept rc-ann-a's vote: cat
    page.keyboard.press("Enter")
    page.wait_for_selector("#save-state.saved", timeout=30_000)
    quality = stack.quality()
    admin = bearer(stack.admin_token)

    def decided() -> quality_pb2.ItemConsensusResponse | None:
        reply = quality.ItemConsensus(
            quality_pb2.ItemConsensusRequest(item_id=item), metadata=admin
        )
        return reply if reply.consensus.status == common_pb2.CONSENSUS_STATUS_EXPERT else None

    reply = until(decided, 60, "the reviewer's decision to reach quality")
    assert reply.consensus.value == "cat" and not reply.HasField("review")
    # An annotator has no review queue.
    with httpx.Client(base_url=stack.web) as client:
        csrf = client.post("/api/session", json={"token": project.tokens["rc-ann-a"]}).json()[
            "csrf_token"
        ]
        refused = client.post(
            f"/api/projects/{project.name}/reviews/next", headers={"X-CSRF-Token": csrf}
        )
        assert refused.status_code == 403, refused.text


def test_the_console_shows_qualitys_numbers_and_a_block_is_enforced(
    stack: Stack, disputed: tuple[Project, str], browser: Any
) -> None:
    project, _ = disputed
    page = browser.new_page()
    sign_in(page, stack, project.tokens["rc-mgr"])
    page.goto(f"{stack.web}/projects/{project.name}/console")
    page.wait_for_selector("#annotators")
    shoot(page, "console")
    scores = stack.quality().AnnotatorScores(
        quality_pb2.AnnotatorScoresRequest(project=project.name),
        metadata=bearer(project.tokens["rc-mgr"]),
    )
    by_id = {a.annotator_id: a for a in scores.annotators}
    assert {"rc-ann-a", "rc-ann-b"} <= set(by_id)
    for person in ("rc-ann-a", "rc-ann-b"):
        row = page.locator(f'tr[data-annotator="{person}"]')
        shown = row.locator('[data-field="labels"]').inner_text()
        assert int(shown) == by_id[person].labels, (person, shown)
        agreement = row.locator('[data-field="agreement_with_consensus"]').inner_text()
        assert agreement == f"{by_id[person].agreement_with_consensus:.2f}", (person, agreement)
    queue = stack.gateway().QueueStats(
        gateway_pb2.QueueStatsRequest(project=project.name),
        metadata=bearer(project.tokens["rc-mgr"]),
    )
    assert page.locator("#q-labels").inner_text() == str(queue.labels_total)
    labelled = queue.items_by_state.get("labelled", 0)
    assert page.locator("#q-labelled").inner_text() == str(labelled)

    page.get_by_role("button", name="Block rc-ann-b").click()
    page.wait_for_selector('tr[data-annotator="rc-ann-b"] .status-blocked')
    shoot(page, "console-after-block")
    # The blocked annotator is refused, by the web and by the gateway behind it.
    with httpx.Client(base_url=stack.web) as client:
        csrf = client.post("/api/session", json={"token": project.tokens["rc-ann-b"]}).json()[
            "csrf_token"
        ]
        refused = client.post(
            f"/api/projects/{project.name}/tasks/next", headers={"X-CSRF-Token": csrf}
        )
        assert refused.status_code == 403 and "blocked" in refused.json()["error"]
    admin = bearer(stack.admin_token)
    deadline = time.monotonic() + 30
    rows: list[Any] = []
    while time.monotonic() < deadline and not rows:
        entries = (
            stack.gateway()
            .ListAudit(
                gateway_pb2.ListAuditRequest(project=project.name, actor="rc-mgr"), metadata=admin
            )
            .entries
        )
        rows = [e for e in entries if e.target == "rc-ann-b" and "status" in e.action]
        time.sleep(0.3)
    assert rows, "the block was not audited"


def test_the_console_drills_from_a_pair_to_an_items_governance_chain(
    stack: Stack, disputed: tuple[Project, str], browser: Any
) -> None:
    """Overview (burndown, throughput, backlog) → agreement heatmap → the items a pair
    disagreed on → the item's chain; each number as quality answers it over gRPC."""
    project, item = disputed
    manager = bearer(project.tokens["rc-mgr"])
    page = browser.new_page()
    sign_in(page, stack, project.tokens["rc-mgr"])
    page.goto(f"{stack.web}/projects/{project.name}/console")
    page.wait_for_selector("#burndown-title")
    progress = stack.quality().ProjectProgress(
        quality_pb2.ProjectProgressRequest(project=project.name), metadata=manager
    )
    assert page.locator("#b-review").inner_text() == str(progress.items_by_state["review"])
    decided = progress.items_by_state["accepted"] + progress.items_by_state["expert"]
    assert page.locator("#b-accepted").inner_text() == str(decided)
    assert page.locator("svg.chart").count() == 3

    page.get_by_role("link", name="Agreement", exact=True).click()
    page.wait_for_selector("#heatmap")
    shoot(page, "console-agreement")
    pairs = stack.quality().PairwiseAgreement(
        quality_pb2.PairwiseAgreementRequest(project=project.name), metadata=manager
    )
    (pair,) = [p for p in pairs.pairs if {p.a, p.b} == {"rc-ann-a", "rc-ann-b"}]
    assert pair.shared_items == 1 and pair.agreed == 0
    # A class opens the items people split on with it.
    page.get_by_role("link", name="Items people split on with dog").click()
    page.wait_for_selector("#contested")
    contested = stack.quality().ContestedItems(
        quality_pb2.ContestedItemsRequest(project=project.name, class_label="dog"),
        metadata=manager,
    )
    assert [c.item_id for c in contested.items] == [item]
    assert page.locator("#contested tbody th").all_inner_texts() == [item]
    assert "cat, dog" in page.locator("#contested").inner_text()
    page.go_back()
    page.wait_for_selector("#heatmap")
    cell = page.get_by_role("link", name=f"{pair.a} and {pair.b}: kappa")
    cell.first.click()
    page.wait_for_selector("#disagreements")
    shoot(page, "console-pair")
    assert "1 item" in page.locator("#pair-total").inner_text()
    page.get_by_role("link", name=item).click()
    page.wait_for_selector("#votes")
    shoot(page, "item-chain")
    chain = page.locator("main").inner_text()
    assert "rc-ann-a" in chain and "rc-ann-b" in chain and "cat" in chain
    assert "No training run has used this item's label yet" in chain or "depth" in chain


def test_models_and_contract_versions_export_and_import(
    stack: Stack, disputed: tuple[Project, str], browser: Any
) -> None:
    project, _ = disputed
    page = browser.new_page()
    sign_in(page, stack, project.tokens["rc-mgr"])
    page.goto(f"{stack.web}/projects/{project.name}/console/models")
    page.wait_for_selector("#versions")
    shoot(page, "console-models")
    page.goto(f"{stack.web}/projects/{project.name}/console/contracts")
    page.wait_for_selector("#contracts")
    link = page.get_by_role("link", name="Export version 1")
    assert link.get_attribute("download") is not None
    # The browser's own session fetches it (a headless profile cancels real downloads).
    reply = page.request.get(f"{stack.web}{link.get_attribute('href')}")
    assert reply.ok and "attachment" in reply.headers["content-disposition"]
    exported = reply.text()
    listed = stack.gateway().ListContracts(
        gateway_pb2.ListContractsRequest(project=project.name),
        metadata=bearer(project.tokens["rc-mgr"]),
    )
    assert exported == listed.versions[0].document
    # Import: a new version from the exported text, through the form, by keyboard.
    page.fill("#contract-document", exported.replace("version: '1'", "version: '2'"))
    page.focus("#contract-document")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector('tr[data-version="2"] .status-active', timeout=30_000)
    shoot(page, "console-contracts")
    current = stack.gateway().GetContract(
        gateway_pb2.GetContractRequest(project=project.name), metadata=bearer(stack.admin_token)
    )
    assert current.contract.version == "2"
    # A document for another project is refused, and says why.
    page.fill("#contract-document", exported.replace(project.name, "elsewhere"))
    page.click("#import-contract button[type=submit]")
    page.wait_for_selector("#contract-message:has-text('this page is')")
