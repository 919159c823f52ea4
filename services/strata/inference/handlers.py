"""Inference's event handlers: contracts, imported items, published models."""

from __future__ import annotations

import logging
from datetime import UTC

import numpy as np

from strata.common.consumer import BatchContext, Batched, HandlerContext, TopicHandler
from strata.common.contract_store import contract_handler
from strata.common.contracts import ContractCache
from strata.common.events import Event
from strata.common.item_store import imported_items, items_imported
from strata.common.topics import CONTRACTS, ITEMS_IMPORTED, MODELS_PUBLISHED
from strata.inference import store
from strata.inference.calibration import calibrate, calibrated
from strata.inference.config import InferenceConfig
from strata.inference.metrics import InferenceMetrics
from strata.inference.registry import Registry
from strata.inference.scoring import Served, score_tolerant
from strata.models import artifact
from strata.models.artifact import ArtifactError, LoadedModel
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)


class InferenceHandlers:
    def __init__(
        self,
        contracts: ContractCache,
        registry: Registry,
        metrics: InferenceMetrics,
        config: InferenceConfig,
    ) -> None:
        self.contracts = contracts
        self.registry = registry
        self.metrics = metrics
        self.config = config

    def on_model(self, ctx: HandlerContext, event: Event) -> None:
        """Validate, calibrate and serve a published version; a version that cannot be
        served is recorded as failed and the previous one keeps serving."""
        msg = event.message
        assert isinstance(msg, events_pb2.ModelPublished)
        if not (msg.project and msg.model_version and msg.artifact_uri):
            raise ValueError("a published model needs project, model_version and artifact_uri")
        if store.model(ctx.conn, msg.project, msg.model_version) is not None:
            return  # seen before (a re-delivery or a re-publish)
        row = store.ModelRow(
            project=msg.project,
            version=msg.model_version,
            family=msg.family,
            artifact_uri=msg.artifact_uri,
            classes=list(msg.classes),
            run_id=msg.run_id,
            metrics=msg.metrics.SerializeToString() if msg.HasField("metrics") else None,
            status="failed",
            error=None,
            calibrated=False,
            temperature=1.0,
            ece_before=None,
            ece_after=None,
            n_gold=0,
            calibration_note="",
            gold_confidence=[],
            gold_correct=[],
            published_at=msg.published_at.ToDatetime(tzinfo=UTC)
            if msg.HasField("published_at")
            else None,
            recorded_at=None,
        )
        try:
            loaded = artifact.loads(artifact.read(msg.artifact_uri))
            if msg.classes and list(msg.classes) != list(loaded.spec.classes):
                raise ArtifactError(
                    f"the event names classes {list(msg.classes)}, "
                    f"the artifact has {loaded.spec.classes}"
                )
        except ArtifactError as exc:
            log.error(
                "%s: model %s cannot be served, the previous version keeps serving: %s",
                msg.project,
                msg.model_version,
                exc,
            )
            self.metrics.models.labels(outcome="failed").inc()
            store.record_model(ctx.conn, _replace(row, error=str(exc)))
            return
        logits, answers = self._calibration_set(ctx, msg, loaded)
        cal = calibrate(logits, answers, min_gold=self.config.min_gold)
        if answers.size:
            probs = calibrated(logits, cal.temperature)
            confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == answers
        else:
            confidence, correct = np.zeros(0), np.zeros(0, dtype=bool)
        store.record_model(
            ctx.conn,
            _replace(
                row,
                family=msg.family or loaded.spec.family,
                classes=list(loaded.spec.classes),
                status="loaded",
                calibrated=cal.calibrated,
                temperature=cal.temperature,
                ece_before=cal.ece_before if answers.size else None,
                ece_after=cal.ece_after if answers.size else None,
                n_gold=cal.n_gold,
                calibration_note=cal.note,
                gold_confidence=confidence.tolist(),
                gold_correct=correct.tolist(),
            ),
        )
        serving = store.serve(ctx.conn, msg.project, msg.model_version)
        self.registry.remember(msg.project, msg.model_version, loaded)
        self.metrics.models.labels(outcome="loaded").inc()
        log.info(
            "%s: model %s loaded (%s); serving generation %d, previous %s",
            msg.project,
            msg.model_version,
            cal.note,
            serving.generation,
            serving.previous_version or "none",
        )

    def _calibration_set(
        self, ctx: HandlerContext, msg: events_pb2.ModelPublished, loaded: LoadedModel
    ) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
        """Held-out gold logits and answers: training's, else this project's gold items."""
        classes = list(loaded.spec.classes)
        index = {c: i for i, c in enumerate(classes)}
        given = [
            g
            for g in msg.calibration_inputs
            if g.gold_answer in index and len(g.logits) == len(classes)
        ]
        if len(given) >= self.config.min_gold:
            return (
                np.asarray([list(g.logits) for g in given], dtype=np.float64),
                np.asarray([index[g.gold_answer] for g in given], dtype=np.int64),
            )
        gold = [
            (common_pb2.ItemContent.FromString(content), answer)
            for _, content, answer in store.gold_items(ctx.conn, msg.project)
            if answer in index
        ]
        if not gold:
            return np.zeros((0, len(classes))), np.zeros(0, dtype=np.int64)
        served = Served(msg.project, msg.model_version, 0, loaded, 1.0, False)
        done, scores, _ = score_tolerant(served, [c for c, _ in gold], embeddings=False)
        if scores is None:
            return np.zeros((0, len(classes))), np.zeros(0, dtype=np.int64)
        return (
            scores.logits.astype(np.float64),
            np.asarray([index[gold[i][1]] for i in done], dtype=np.int64),
        )

    def routes(self) -> dict[str, TopicHandler]:
        return {
            CONTRACTS.name: contract_handler(self.contracts),
            ITEMS_IMPORTED.name: Batched(on_items_imported),
            MODELS_PUBLISHED.name: self.on_model,
        }


def on_items_imported(ctx: BatchContext, events: list[Event]) -> None:
    """Keep each pool and gold item (duplicates are never scored), with the external id
    an import of predictions names it by."""
    items_imported(duplicates=False)(ctx, events)
    named = []
    for _, msg in imported_items(events):
        item = msg.item
        if item.item_id and item.project and item.external_id and not item.canonical_item_id:
            named.append((item.item_id, item.project, item.external_id))
    store.record_external_ids(ctx.conn, named)


def _replace(row: store.ModelRow, **changes: object) -> store.ModelRow:
    from dataclasses import replace

    return replace(row, **changes)  # type: ignore[arg-type]
