"""Importing answers gathered elsewhere as votes of named external annotators.

A team moving to Strata brings the answers it already paid for: a crowd's CSV, a
Label Studio export. Each answer becomes a vote of "ext:<name>" (never a Strata
account: an import cannot speak for a person who signs in) on the item it names by
external id. The votes are stored as they come, chunk by chunk, and gold answers are
scored; the items are decided once the whole file is in, under a Dawid-Skene estimate
that has seen every answer, so the result is the crowd's consensus and not an
accident of the order the lines came in.

`check` and `vote_label_id` are the pure part; `VoteImporter` does the I/O.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from strata.common.consumer import BatchContext
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.quality import store
from strata.quality.handlers import EXTERNAL, QualityHandlers, class_names
from strata.v1 import quality_pb2

log = logging.getLogger(__name__)

MAX_ERRORS = 1000
MAX_NAME = 200
# uuid5 namespace of imported votes: the same answer always gets the same label id.
_NAMESPACE = uuid.UUID("8f0c2a4e-3b1d-5c6e-9a7f-2d4b6e8c0a13")


def external_annotator(name: str) -> str:
    """The vote's annotator id: the source's name under the external prefix."""
    name = name.strip()
    return name if name.startswith(EXTERNAL) else EXTERNAL + name


def vote_label_id(project: str, item_id: str, annotator_id: str) -> str:
    """One label id per (item, external annotator): a second import of it is a repeat."""
    return str(uuid.uuid5(_NAMESPACE, f"{project}\x1f{item_id}\x1f{annotator_id}"))


def check(vote: quality_pb2.ImportedVote, classes: Sequence[str]) -> str | None:
    """What is wrong with an answer by itself (before its item is looked up), or None."""
    missing = [n for n in ("item", "annotator", "value") if not getattr(vote, n).strip()]
    if missing:
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty"
    if len(vote.annotator) > MAX_NAME:
        return f"annotator name is longer than {MAX_NAME} characters"
    if vote.value not in classes:
        return f"{vote.value!r} is not a class of the contract (classes: {', '.join(classes)})"
    if vote.duration_ms < 0:
        return "duration_ms cannot be negative"
    return None


@dataclass
class ImportSummary:
    received: int = 0
    imported: int = 0
    already: int = 0
    gold: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    rejected: int = 0
    items: set[str] = field(default_factory=set)
    # Until when a missing item is waited for (items imported moments ago may still be
    # on their way to quality on items.imported); set by the first chunk.
    wait_until: float | None = None

    def reject(self, line: int, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((line, message))


def _resolve(
    conn: store.Conn, project: str, refs: Sequence[str]
) -> dict[str, tuple[str, str | None]]:
    """Each reference (external id, or item id) of the project's items -> (item id, gold
    answer). An external id shared by copies names the canonical item."""
    rows = conn.execute(
        "SELECT DISTINCT ON (r) r, item_id, gold_answer FROM ("
        "  SELECT external_id AS r, item_id, gold_answer, canonical_item_id IS NOT NULL AS copy"
        "  FROM item_data WHERE project = %s AND external_id = ANY(%s)"
        "  UNION ALL"
        "  SELECT item_id, item_id, gold_answer, false FROM item_data"
        "  WHERE project = %s AND item_id = ANY(%s)"
        ") found ORDER BY r, copy, item_id",
        (project, list(refs), project, list(refs)),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _existing(conn: store.Conn, label_ids: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT label_id, value FROM votes WHERE label_id = ANY(%s)", (list(label_ids),)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


class VoteImporter:
    """Stores imported answers a chunk per transaction; decides their items at the end."""

    def __init__(
        self,
        db: Database,
        contracts: ContractCache,
        handlers: QualityHandlers,
        estimate: Callable[[str, bool], bool],
        *,
        estimate_wait_s: float = 60.0,
        item_wait_s: float = 15.0,
    ) -> None:
        self.item_wait_s = item_wait_s
        self.db = db
        self.contracts = contracts
        self.handlers = handlers
        self.estimate = estimate
        self.estimate_wait_s = estimate_wait_s

    @contextmanager
    def running(self, project: str) -> Iterator[None]:
        """Hold the project's import lock while answers come in: the background
        estimator leaves the project alone (deciding on part of the file would decide
        items on part of the evidence), and a second import waits for this one."""
        db = self.db.dedicated()
        conn = db.get()
        conn.autocommit = True
        try:
            conn.execute(store.IMPORT_LOCK.format("pg_advisory_lock"), (project,))
            yield
        finally:
            db.close()  # ends the session, and its lock with it

    def chunk(
        self, project: str, votes: Sequence[quality_pb2.ImportedVote], summary: ImportSummary
    ) -> None:
        """Store one chunk's good answers in one transaction; report the bad ones."""
        contract = self.contracts.current(project)
        assert contract is not None, "the servicer checks the contract first"
        classes = class_names(contract)
        summary.received += len(votes)
        good: list[quality_pb2.ImportedVote] = []
        for v in votes:
            problem = check(v, classes)
            if problem:
                summary.reject(v.line, problem)
            else:
                good.append(v)
        trace = uuid.uuid4().hex
        found = self._find(project, {v.item.strip() for v in good}, summary)
        with self.db.transaction() as conn:
            fresh: dict[str, store.NewVote] = {}
            lines: dict[str, int] = {}
            for v in good:
                ref = found.get(v.item.strip())
                if ref is None:
                    summary.reject(
                        v.line,
                        f"no item with external id {v.item.strip()!r} in project {project} "
                        "(import the items first; if they were imported moments ago, run "
                        "this import again: what is in stays in)",
                    )
                    continue
                item_id, gold_answer = ref
                annotator = external_annotator(v.annotator)
                label_id = vote_label_id(project, item_id, annotator)
                earlier = fresh.get(label_id)
                if earlier is not None:
                    if earlier.value != v.value:
                        summary.reject(
                            v.line,
                            f"{annotator} already answered {earlier.value!r} for item "
                            f"{v.item.strip()!r} on line {lines[label_id]}",
                        )
                    else:
                        summary.already += 1
                    continue
                lines[label_id] = v.line
                fresh[label_id] = store.NewVote(
                    label_id=label_id,
                    item_id=item_id,
                    project=project,
                    annotator_id=annotator,
                    value=v.value,
                    ontology_version=contract.version,
                    source="human",
                    gold=gold_answer is not None,
                    gold_answer=gold_answer,
                    submitted_at=(
                        v.submitted_at.ToDatetime(tzinfo=UTC)
                        if v.HasField("submitted_at")
                        else datetime.now(UTC)
                    ),
                    duration_ms=v.duration_ms,
                    prelabel_value=None,
                )
            stored = _existing(conn, list(fresh))
            for label_id, value in stored.items():
                vote = fresh.pop(label_id)
                if value == vote.value:
                    summary.already += 1
                else:
                    summary.reject(
                        lines[label_id],
                        f"{vote.annotator_id}'s answer for this item was imported before as "
                        f"{value!r}; an import does not change answers",
                    )
            new = store.insert_votes(conn, list(fresh.values()))
            added = [v for v in fresh.values() if v.label_id in new]
            summary.imported += len(added)
            summary.gold += sum(v.gold for v in added)
            summary.items.update(v.item_id for v in added)
            if not added:
                return
            ctx = BatchContext(conn, [])
            items = store.lock_items(conn, added)
            counts = store.votes_of(conn, items)
            store.update_items(
                conn,
                [
                    store.ItemUpdate(
                        i.item_id, i.state, len(counts.get(i.item_id, [])), i.requested_overlap
                    )
                    for i in items.values()
                ],
            )
            self.handlers.score_gold(ctx, [(v, trace) for v in added if v.gold])
            ctx.flush()

    def _find(
        self, project: str, refs: set[str], summary: ImportSummary
    ) -> dict[str, tuple[str, str | None]]:
        """Resolve the chunk's item references, waiting a little for missing ones."""
        if summary.wait_until is None:
            summary.wait_until = time.monotonic() + self.item_wait_s
        found: dict[str, tuple[str, str | None]] = {}
        missing = sorted(refs)
        while True:
            with self.db.transaction() as conn:
                found.update(_resolve(conn, project, missing))
            missing = [r for r in missing if r not in found]
            if not missing or time.monotonic() >= summary.wait_until:
                return found
            time.sleep(0.5)

    def finish(self, project: str, summary: ImportSummary) -> int:
        """Estimate the project's crowd over every vote and decide its waiting items
        (the estimator's hook does the deciding); returns how many of the imported
        items are accepted now."""
        if not (summary.imported or summary.already):
            return 0
        deadline = time.monotonic() + self.estimate_wait_s
        # Another replica may hold the project's estimate lock: its round, or ours next.
        while not self.estimate(project, True) and time.monotonic() < deadline:
            time.sleep(0.2)
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) FROM items "
                "WHERE item_id = ANY(%s) AND state IN ('accepted', 'expert')",
                (sorted(summary.items),),
            ).fetchone()
        return int(row[0]) if row else 0
