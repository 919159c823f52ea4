"""Quality's background loops: Dawid-Skene re-estimation, label-error audits, gauges."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from strata.common import outbox, trust
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.stats import wilson_interval
from strata.common.topics import TRUST_CURVES
from strata.quality import store
from strata.quality.aggregation import dawid_skene
from strata.quality.handlers import class_names, request_relabel
from strata.quality.label_errors import find_label_issues
from strata.quality.metrics import QualityMetrics
from strata.quality.report import agreement, code_votes, gold_trust_observations
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)


def every(
    interval_s: float, step: Callable[[], None], name: str
) -> Callable[[threading.Event], None]:
    """A loop that runs `step` every `interval_s` until stopped; errors are logged, not fatal."""

    def loop(stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            try:
                step()
            except Exception:
                log.exception("%s failed; retrying in %.1fs", name, interval_s)

    return loop


class Estimator:
    """Re-estimates each project's annotator confusion matrices over all its labels."""

    def __init__(
        self,
        db: Database,
        contracts: ContractCache,
        metrics: QualityMetrics,
        *,
        prior_strength: float,
        prior_accuracy: float,
        on_estimated: Callable[[str], None] = lambda project: None,
    ) -> None:
        self.on_estimated = on_estimated
        self.db = db
        self.contracts = contracts
        self.metrics = metrics
        self.prior_strength = prior_strength
        self.prior_accuracy = prior_accuracy

    def run_once(self) -> None:
        with self.db.transaction() as conn:
            names = store.projects(conn)
        for project in names:
            self.estimate(project)

    def estimate(self, project: str, force: bool = False) -> bool:
        """True when a new estimate was written."""
        contract = self.contracts.current(project)
        if contract is None:
            return False
        classes = class_names(contract)
        index = {c: i for i, c in enumerate(classes)}
        with self.db.transaction() as conn:
            # One replica estimates a project at a time; the others skip it.
            locked = conn.execute(
                "SELECT pg_try_advisory_xact_lock(hashtext('strata-quality-estimate:' || %s))",
                (project,),
            ).fetchone()
            if not locked or not locked[0] or store.importing(conn, project):
                return False
            total, seen = store.votes_seen(conn, project)
            if total == seen and not force:
                return False
            started = time.perf_counter()
            votes = [v for v in store.project_votes(conn, project) if v[2] in index]
            if not votes:
                return False
            items, item_idx = np.unique([v[0] for v in votes], return_inverse=True)
            annotators, annotator_idx = np.unique([v[1] for v in votes], return_inverse=True)
            labels = np.asarray([index[v[2]] for v in votes], dtype=np.int64)
            # Gold items anchor the estimate: their true class is known.
            gold = {int(item_idx[n]): index[v[3]] for n, v in enumerate(votes) if v[3] in index}
            result = dawid_skene(
                item_idx,
                annotator_idx,
                labels,
                len(classes),
                n_items=len(items),
                n_annotators=len(annotators),
                prior_strength=self.prior_strength,
                prior_accuracy=self.prior_accuracy,
                known_items=list(gold),
                known_classes=list(gold.values()),
            )
            confusions = {str(a): result.confusions[j] for j, a in enumerate(annotators)}
            store.save_estimate(
                conn,
                project,
                classes,
                result.class_priors,
                confusions,
                labels_used=len(votes),
                items_used=len(items),
                iterations=result.iterations,
                converged=result.converged,
                votes_seen=total,
            )
            self.publish_trust(conn, project, contract.version, votes, classes, confusions, result)
        took = time.perf_counter() - started
        self.metrics.estimate_seconds.observe(took)
        log.info(
            "%s: Dawid-Skene over %d labels, %d items, %d annotators: %d iterations, %.2fs",
            project,
            len(votes),
            len(items),
            len(annotators),
            result.iterations,
            took,
        )
        self.on_estimated(project)
        return True

    def publish_trust(
        self,
        conn: Any,
        project: str,
        contract_version: str,
        votes: list[Any],
        classes: list[str],
        confusions: dict[str, Any],
        result: Any,
    ) -> None:
        """The trust curve fitted on gold under this estimate, to training (outbox)."""
        scores, right = gold_trust_observations(
            [v[0] for v in votes],
            [v[1] for v in votes],
            [v[2] for v in votes],
            [v[3] for v in votes],
            classes,
            confusions,
            result.class_priors,
        )
        curve = trust.to_message(trust.fit(scores, right), project, datetime.now(UTC))
        outbox.publish(
            conn,
            TRUST_CURVES.name,
            project,
            events_pb2.TrustCurveFitted(
                routing=common_pb2.RoutingMetadata(
                    source_service="quality", project=project, ontology_version=contract_version
                ),
                curve=curve,
            ),
        )


class LabelErrorAuditor:
    """Sends accepted labels the model confidently disagrees with back to review."""

    def __init__(
        self,
        db: Database,
        metrics: QualityMetrics,
        *,
        min_items: int,
        budget: int,
        min_model_accuracy: float = 0.85,
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.min_items = min_items
        self.budget = budget
        self.min_model_accuracy = min_model_accuracy
        self._untrusted_logged: dict[str, str] = {}

    def run_once(self) -> None:
        with self.db.transaction() as conn:
            names = store.projects(conn)
        for project in names:
            self.audit(project)
            self.act_on_memorization(project)

    def trusted(self, project: str, version: str) -> bool:
        """A model may question accepted labels only once its gold accuracy's lower 95%
        bound reaches `min_model_accuracy`: a weak model disagrees with good labels."""
        with self.db.transaction() as conn:
            gold = store.gold_predictions(conn, project, version)
        right = sum(1 for answer, predicted in gold if answer == predicted)
        low, _ = wilson_interval(right, len(gold))
        if low < self.min_model_accuracy:
            if self._untrusted_logged.get(project) != version:
                self._untrusted_logged[project] = version
                log.info(
                    "%s: model %s is right on %d of %d gold items (lower bound %.2f < %.2f): "
                    "its disagreements are not sent to review",
                    project,
                    version,
                    right,
                    len(gold),
                    low,
                    self.min_model_accuracy,
                )
            return False
        return True

    def _relabel(
        self,
        conn: Any,
        item_id: str,
        detail: str,
        label_ids: list[str],
        version: str,
        trace: str,
        detector: str,
    ) -> bool:
        """One accepted item back to review, its event through the outbox."""
        return request_relabel(
            conn,
            lambda topic, key, message, trace_id: outbox.publish(
                conn, topic, key, message, trace_id=trace_id
            ),
            item_id,
            detail,
            label_ids,
            version,
            trace,
            detector,
            self.metrics,
        )

    def act_on_memorization(self, project: str) -> int:
        """Send labels that training flagged as memorized back to review, once the
        version that flagged them is trusted (see `trusted`); returns how many."""
        with self.db.transaction() as conn:
            flags = store.flags_to_act_on(conn, project)
        trust: dict[str, bool] = {}
        sent = 0
        with self.db.transaction() as conn:
            trace = uuid.uuid4().hex
            for item_id, label_id, version, reason, score, run_id in flags:
                if sent >= self.budget:
                    break
                if version not in trust:
                    trust[version] = self.trusted(project, version)
                if not trust[version]:
                    continue
                if self._relabel(
                    conn,
                    item_id,
                    f"memorized in training run {run_id}: {reason} ({score:.2f})",
                    [label_id] if label_id and label_id != item_id else [],
                    version,
                    trace,
                    "memorization",
                ):
                    sent += 1
        if sent:
            log.info("%s: %d memorized labels sent to review", project, sent)
        return sent

    def audit(self, project: str) -> int:
        """Items sent to review in this round."""
        with self.db.transaction() as conn:
            rows = store.accepted_with_predictions(conn, project)
        usable = []
        for item_id, value, classes, p, version, label_ids in rows:
            if value in classes and len(classes) == len(p):
                usable.append((item_id, classes.index(value), classes, p, version, label_ids))
        # Probabilities must come from one model and share one class order to be
        # compared: keep the commonest version.
        if usable:
            commonest = Counter((u[4], tuple(u[2])) for u in usable).most_common(1)[0][0]
            usable = [u for u in usable if (u[4], tuple(u[2])) == commonest]
        if len(usable) < self.min_items or not self.trusted(project, usable[0][4]):
            return 0
        labels = np.asarray([u[1] for u in usable], dtype=np.int64)
        probs = np.asarray([u[3] for u in usable], dtype=float)
        issues = find_label_issues(labels, probs)
        sent = 0
        with self.db.transaction() as conn:
            candidates = [usable[i.index] for i in issues]
            done = store.reviewed_before(
                conn, [c[0] for c in candidates], candidates[0][4] if candidates else ""
            )
            trace = uuid.uuid4().hex
            for issue in issues:
                if sent >= self.budget:
                    break
                item_id, _, classes, _, version, label_ids = usable[issue.index]
                if item_id in done:
                    continue
                detail = (
                    f"model {version} is confident the item is {classes[issue.suggested]!r}, "
                    f"not {classes[issue.given]!r} (p={issue.self_confidence:.2f} for the "
                    "accepted label; confident learning)"
                )
                if self._relabel(
                    conn, item_id, detail, label_ids, version, trace, "confident_learning"
                ):
                    sent += 1
        if sent:
            log.info("%s: %d suspected label errors sent to review", project, sent)
        return sent


class Gauges:
    """Refreshes the review backlog, agreement and gold-accuracy gauges. Agreement is
    over each project's newest `recent_votes` votes: the gauge says how people agree now,
    at a cost that does not grow with the project (the report measures all of it)."""

    MAX_ANNOTATOR_SERIES = 50

    def __init__(
        self,
        db: Database,
        contracts: ContractCache,
        metrics: QualityMetrics,
        recent_votes: int = 20_000,
    ) -> None:
        self.db = db
        self.contracts = contracts
        self.metrics = metrics
        self.recent_votes = recent_votes

    def run_once(self) -> None:
        with self.db.transaction() as conn:
            backlog = store.review_backlog(conn)
            names = store.projects(conn)
        self.metrics.review_backlog.clear()
        for project, kind, count in backlog:
            self.metrics.review_backlog.labels(project=project, kind=kind).set(count)
        for project in names:
            contract = self.contracts.current(project)
            if contract is None:
                continue
            with self.db.transaction() as conn:
                data = store.gauge_data(conn, contract, self.recent_votes)
            self.metrics.agreement_threshold.labels(
                project=project, metric=data.agreement_metric
            ).set(data.agreement_threshold)
            self.metrics.gold_accuracy_threshold.labels(project=project).set(data.gold_threshold)
            coded = code_votes(data)
            overall = agreement(coded.item, coded.annotator, coded.label, len(data.classes))
            for metric in ("krippendorff_alpha", "fleiss_kappa", "cohen_kappa"):
                value = overall.metric(metric)
                if value is not None:
                    self.metrics.agreement.labels(project=project, metric=metric).set(value)
            # A bounded set of series: the annotators with the most gold answers.
            top = sorted(data.gold.items(), key=lambda kv: -kv[1][0])[: self.MAX_ANNOTATOR_SERIES]
            for annotator, (answered, correct) in top:
                self.metrics.gold_accuracy.labels(project=project, annotator=annotator).set(
                    correct / answered
                )
