"""Importing an outside model's predictions as pre-labels (`ImportPredictions`).

`check` (pure) turns one row into the prediction to publish, or says what is wrong
with it. `PredictionImport` resolves the items a chunk of rows names, stores the
good rows keyed by (item, model) and publishes each new or changed one as a
`PredictionMade` through the outbox, all in one transaction per chunk: a chunk is
never half-applied, and an interrupted import resumes by running it again.

An imported prediction is never proposed for auto-accept and is not calibrated. The
gateway, the sampler and quality keep the newest prediction per item, so it is the
item's pre-label until the serving model next scores the item (a new version, or a
rollback, re-scores the pool), and it replaces what the serving model said before.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from strata.common import outbox
from strata.common.db import Database
from strata.common.events import OutgoingEvent
from strata.common.predictions import prediction_events
from strata.inference import store
from strata.v1 import common_pb2, inference_pb2

# Rows per transaction.
CHUNK = 1000
# Rejected rows named in the reply; the count covers them all.
MAX_ERRORS_REPORTED = 1000
# How far a file's probabilities may sum past 1 (rounding in the source).
SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Checked:
    """A row as it is stored and published."""

    value: str
    confidence: float
    probabilities: list[float]  # in the contract's class order, summing to 1


def _unit(x: float) -> bool:
    return math.isfinite(x) and 0.0 <= x <= 1.0


def check(row: inference_pb2.ImportedPrediction, classes: Sequence[str]) -> Checked | str:
    """The prediction `row` makes over the contract's `classes`, or what is wrong with it.

    A class missing from `probabilities` gets an even share of the mass left; with no
    probabilities at all, the mass `confidence` leaves is spread evenly over the other
    classes. An empty value is the most probable class; an unset confidence is the
    value's probability."""
    known = set(classes)
    given = dict(row.probabilities)
    for name, p in sorted(given.items()):
        if name not in known:
            return f"class {name!r} in probabilities is not in the contract"
        if not _unit(p):
            return f"probability {p} of {name!r} is outside [0, 1]"
    value = row.value or (max(given, key=lambda c: (given[c], c)) if given else "")
    if not value:
        return "no value: give the predicted class (or probabilities)"
    if value not in known:
        return f"class {value!r} is not in the contract ({', '.join(classes)})"
    if row.HasField("confidence"):
        confidence = row.confidence
    elif value in given:
        confidence = given[value]
    else:
        return "no confidence: give it (or the value's probability)"
    if not _unit(confidence):
        return f"confidence {confidence} is outside [0, 1]"
    if not given:
        rest = (1.0 - confidence) / max(1, len(classes) - 1)
        probs = [confidence if c == value else rest for c in classes]
        return Checked(value, confidence, probs if len(classes) > 1 else [1.0])
    total = sum(given.values())
    missing = [c for c in classes if c not in given]
    if total > 1.0 + SUM_TOLERANCE or (not missing and abs(total - 1.0) > SUM_TOLERANCE):
        return f"probabilities sum to {total:.4g}, not 1"
    share = max(0.0, 1.0 - total) / len(missing) if missing else 0.0
    probs = [given.get(c, share) for c in classes]
    norm = sum(probs)
    if norm <= 0.0:
        return "probabilities are all 0"
    return Checked(value, confidence, [p / norm for p in probs])


def prediction(
    project: str, model: str, item_id: str, classes: Sequence[str], checked: Checked
) -> common_pb2.Prediction:
    """The `Prediction` an imported row publishes: uncalibrated, never auto-accepted."""
    probs = checked.probabilities
    ranked = sorted(probs, reverse=True)
    return common_pb2.Prediction(
        item_id=item_id,
        model_version=model,
        project=project,
        classes=list(classes),
        probabilities=probs,
        predicted_class=checked.value,
        confidence=checked.confidence,
        calibrated=False,
        raw_confidence=checked.confidence,
        entropy=-sum(p * math.log(p) for p in probs if p > 0.0),
        margin=ranked[0] - ranked[1] if len(ranked) > 1 else ranked[0],
        auto_accept=False,
        spot_check=False,
    )


@dataclass
class ImportSummary:
    received: int = 0
    imported: int = 0
    already: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    rejected: int = 0

    def reject(self, line: int, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append((line, message))


class PredictionImport:
    """One `ImportPredictions` stream: one project, one outside model, the contract's
    classes as they were when it started."""

    def __init__(
        self, db: Database, project: str, model: str, classes: Sequence[str], imported_by: str
    ) -> None:
        self.db = db
        self.project = project
        self.model = model
        self.classes = list(classes)
        self.imported_by = imported_by
        self.summary = ImportSummary()
        # Each item once per import: a second row for it is a mistake in the file.
        self._lines: dict[str, int] = {}

    def add(self, rows: Sequence[inference_pb2.ImportedPrediction]) -> None:
        for start in range(0, len(rows), CHUNK):
            self._chunk(rows[start : start + CHUNK])

    def _chunk(self, rows: Sequence[inference_pb2.ImportedPrediction]) -> None:
        self.summary.received += len(rows)
        with self.db.transaction(timeout=30.0) as conn:
            external, ids = store.items_named(conn, self.project, sorted({r.item for r in rows}))
            good: list[tuple[str, Checked]] = []
            for row in rows:
                item_id = self._item(row, external, ids)
                if item_id is None:
                    continue
                checked = check(row, self.classes)
                if isinstance(checked, str):
                    self.summary.reject(row.line, checked)
                    continue
                self._lines[item_id] = row.line
                good.append((item_id, checked))
            changed = store.save_imported_predictions(
                conn,
                self.project,
                self.model,
                self.classes,
                [(i, c.value, c.confidence, c.probabilities) for i, c in good],
                self.imported_by,
            )
            outbox.enqueue_many(
                conn, self._events([(i, c) for i, c in good if i in changed]), bulk=True
            )
        self.summary.imported += len(changed)
        self.summary.already += len(good) - len(changed)

    def _item(
        self,
        row: inference_pb2.ImportedPrediction,
        external: dict[str, list[str]],
        ids: set[str],
    ) -> str | None:
        """The item `row` names (its external id first, else its item id), or None with
        the row rejected."""
        if not row.item:
            self.summary.reject(row.line, "no item: give the item's external id or item id")
            return None
        named = external.get(row.item, [])
        if len(named) > 1:
            self.summary.reject(
                row.line,
                f"external id {row.item} names {len(named)} items in project {self.project}; "
                "give the item id instead",
            )
            return None
        item_id = named[0] if named else (row.item if row.item in ids else None)
        if item_id is None:
            self.summary.reject(
                row.line, f"no item with external id {row.item} in project {self.project}"
            )
            return None
        if item_id in self._lines:
            self.summary.reject(
                row.line,
                f"item {row.item} already has a prediction on line {self._lines[item_id]} "
                "of this import",
            )
            return None
        return item_id

    def _events(self, good: list[tuple[str, Checked]]) -> list[OutgoingEvent]:
        now = Timestamp()
        now.GetCurrentTime()
        made = []
        for item_id, checked in good:
            p = prediction(self.project, self.model, item_id, self.classes, checked)
            p.predicted_at.CopyFrom(now)
            made.append(p)
        routing = common_pb2.RoutingMetadata(
            trace_id=uuid.uuid4().hex,  # one chunk, one trace
            source_service="inference",
            project=self.project,
            attributes={"model_version": self.model, "imported": "true"},
        )
        return prediction_events(routing, made)
