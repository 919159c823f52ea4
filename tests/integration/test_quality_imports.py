"""Answers gathered elsewhere, imported into a real quality service as votes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from strata.common.events import OutgoingEvent, make_event
from strata.common.topics import ITEMS_IMPORTED, LABELS_CONSENSUS
from strata.v1 import common_pb2, events_pb2, quality_pb2

from .conftest import Infra, produce, read_topic, wait_until
from .quality_support import Stack, quality_contract, quality_stack

Code = grpc.StatusCode


@pytest.fixture
def stack(infra: Infra) -> Iterator[Stack]:
    with quality_stack(infra, import_item_wait_s=1.0, gold_min_answered=1) as s:
        yield s


def item_event(project: str, item_id: str, external_id: str, gold: str = "") -> OutgoingEvent:
    msg = events_pb2.ItemImported(
        routing=common_pb2.RoutingMetadata(project=project, source_service="sampler"),
        item=common_pb2.Item(
            item_id=item_id,
            project=project,
            external_id=external_id,
            content=common_pb2.ItemContent(text=f"text of {external_id}"),
        ),
        gold_answer=gold,
    )
    return make_event(ITEMS_IMPORTED, item_id, events_pb2.ItemsImported(items=[msg]))


def vote(line: int, item: str, annotator: str, value: str) -> quality_pb2.ImportedVote:
    return quality_pb2.ImportedVote(
        line=line, item=item, annotator=annotator, value=value, duration_ms=1000 + line
    )


def import_votes(
    stack: Stack, project: str, chunks: list[list[quality_pb2.ImportedVote]], md: list
) -> quality_pb2.ImportVotesResponse:
    requests = (quality_pb2.ImportVotesRequest(project=project, votes=c) for c in chunks)
    return stack.stub.ImportVotes(requests, metadata=md, timeout=120)


def votes_in(stack: Stack, project: str) -> list[tuple]:
    with stack.quality.db.transaction() as conn:
        return conn.execute(
            "SELECT annotator_id, value, gold, duration_ms FROM votes WHERE project = %s "
            "ORDER BY annotator_id, value",
            (project,),
        ).fetchall()


def test_imported_answers_are_votes_of_external_annotators_that_decide_items(
    stack: Stack,
) -> None:
    project = f"q{uuid.uuid4().hex[:8]}"
    stack.gateway.load_contract(quality_contract(project))
    boot = stack.quality.config.kafka_bootstrap
    ids = {f"e{i}": f"{project}-i{i}" for i in range(4)}
    produce(boot, [item_event(project, item_id, ext) for ext, item_id in ids.items()])
    produce(boot, [item_event(project, f"{project}-g", "g0", gold="dog")])

    def known() -> int:
        with stack.quality.db.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) FROM item_data i JOIN contracts c USING (project) "
                "WHERE i.project = %s",
                (project,),
            ).fetchone()
            return int(row[0]) if row else 0

    wait_until(lambda: known() == 5, 20, "the items and the contract to reach quality")
    manager = stack.gateway.annotator(f"mgr-{project}", common_pb2.ROLE_MANAGER, project)
    lines = [
        vote(n, f"e{i}", f"w{w}", "cat")
        for n, (i, w) in enumerate(((i, w) for i in range(3) for w in range(3)), start=2)
    ]
    good = [
        *lines,
        vote(11, "e3", "w0", "dog"),
        vote(12, ids["e3"], "w1", "dog"),  # the Strata item id names the item too
        vote(13, "g0", "w0", "dog"),  # gold: right
        vote(14, "g0", "w1", "cat"),  # gold: wrong
    ]
    bad = [
        vote(15, "nope", "w0", "cat"),
        vote(16, "e3", "w2", "cow"),
        vote(17, "e3", "", "dog"),
        vote(18, "e0", "w0", "dog"),  # w0 said cat on line 2
    ]
    reply = import_votes(stack, project, [good[:7], good[7:] + bad], manager)
    assert (reply.received, reply.imported, reply.already, reply.gold) == (17, 13, 0, 2)
    assert [(e.line, e.message.split(" (")[0]) for e in reply.errors] == [
        (15, f"no item with external id 'nope' in project {project}"),
        (16, "'cow' is not a class of the contract"),
        (17, "annotator is empty"),
        # Line 2 came in an earlier chunk: it is already stored.
        (
            18,
            "ext:w0's answer for this item was imported before as 'cat'; an import does not "
            "change answers",
        ),
    ]
    assert reply.rejected == 4 and reply.items == 5
    # Three agreeing answers settle e0..e2 once the crowd is estimated; e3 has two.
    assert reply.accepted == 3
    stored = votes_in(stack, project)
    assert len(stored) == 13 and {s[0] for s in stored} == {"ext:w0", "ext:w1", "ext:w2"}
    assert ("ext:w1", "cat", True, 1014) in stored
    decided = read_topic(
        boot,
        LABELS_CONSENSUS,
        lambda m: m.consensus.project == project and m.consensus.status == 1,
        3,
    )
    assert sorted(m.consensus.item_id for m in decided) == sorted(ids[f"e{i}"] for i in range(3))
    assert all(m.consensus.value == "cat" for m in decided)
    with stack.quality.db.transaction() as conn:
        gold = conn.execute(
            "SELECT annotator_id, gold_answered, gold_correct FROM annotators "
            "WHERE project = %s AND gold_answered > 0 ORDER BY 1",
            (project,),
        ).fetchall()
    assert gold == [("ext:w0", 1, 1), ("ext:w1", 1, 0)]

    # The same file again changes nothing; a different answer for a stored one is refused.
    again = import_votes(stack, project, [good, [vote(30, "e1", "w1", "dog")]], manager)
    assert (again.imported, again.already, again.rejected) == (0, 13, 1)
    assert "imported before as 'cat'" in again.errors[0].message
    assert votes_in(stack, project) == stored


def test_only_a_projects_managers_import_answers(stack: Stack) -> None:
    project = f"q{uuid.uuid4().hex[:8]}"
    stack.gateway.load_contract(quality_contract(project))
    other = f"q{uuid.uuid4().hex[:8]}"
    stack.gateway.load_contract(quality_contract(other))
    stranger = stack.gateway.annotator(f"mgr-{other}", common_pb2.ROLE_MANAGER, other)
    annotator = stack.gateway.annotator(f"ann-{project}", common_pb2.ROLE_ANNOTATOR, project)
    for md, code in ((stranger, Code.NOT_FOUND), (annotator, Code.PERMISSION_DENIED)):
        with pytest.raises(grpc.RpcError) as refused:
            import_votes(stack, project, [[vote(2, "e0", "w", "cat")]], md)
        assert refused.value.code() == code
    assert votes_in(stack, project) == []
