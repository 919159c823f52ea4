"""The model versions one replica serves, kept in step with the `serving` table.

Whichever replica handles `strata.models.published` validates and calibrates the
version and records it in Postgres; every replica then follows the `serving`
table (polling), loading a new version before swapping it in with one reference
assignment: a request holds the `Served` it started with, so none is dropped
during a swap. The last few loaded versions stay in memory for a fast rollback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

import numpy as np

from strata.common.db import Database
from strata.inference import store
from strata.inference.metrics import InferenceMetrics
from strata.inference.scoring import Served
from strata.models import artifact
from strata.models.artifact import ArtifactError, LoadedModel

log = logging.getLogger(__name__)


class Registry:
    def __init__(self, db: Database, metrics: InferenceMetrics, keep: int = 4) -> None:
        self.db = db
        self.metrics = metrics
        self.keep = keep
        self._served: dict[str, Served] = {}
        self._loaded: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._last_miss_refresh = 0.0

    def get(self, project: str) -> Served | None:
        return self._served.get(project)

    def get_or_refresh(self, project: str, min_interval_s: float = 0.5) -> Served | None:
        """The served model; on a miss, follow the table once first (at most every
        `min_interval_s`), so a version published moments ago answers before the next poll."""
        served = self._served.get(project)
        if served is None and time.monotonic() - self._last_miss_refresh >= min_interval_s:
            self._last_miss_refresh = time.monotonic()
            try:
                self.refresh()
            except Exception as exc:  # Postgres away: answer from what is loaded
                log.warning("model registry refresh failed: %s", exc)
            served = self._served.get(project)
        return served

    def snapshot(self) -> list[Served]:
        return list(self._served.values())

    def remember(self, project: str, version: str, loaded: LoadedModel) -> None:
        """Keep a model this replica has just loaded, so following the table is instant."""
        with self._lock:
            self._loaded[(project, version)] = loaded
            self._loaded.move_to_end((project, version))
            while len(self._loaded) > self.keep * max(1, len(self._served)):
                self._loaded.popitem(last=False)

    def _load(self, project: str, version: str, uri: str) -> LoadedModel:
        with self._lock:
            hit = self._loaded.get((project, version))
        if hit is not None:
            return hit
        loaded = artifact.loads(artifact.read(uri))
        self.remember(project, version, loaded)
        return loaded

    def refresh(self) -> None:
        """Follow the `serving` table: load and swap in versions that changed."""
        with self.db.transaction() as conn:
            rows = store.serving(conn)
            wanted = {
                r.project: (r, store.model(conn, r.project, r.version))
                for r in rows
                if (cur := self._served.get(r.project)) is None or cur.generation != r.generation
            }
        for project, (row, model) in wanted.items():
            if model is None or model.status != "loaded":
                log.error(
                    "%s: serving table names %s, which is not a loaded model", project, row.version
                )
                continue
            try:
                loaded = self._load(project, row.version, model.artifact_uri)
            except ArtifactError as exc:
                # Recorded as loadable, now unreadable here (volume gone?): keep serving.
                log.error(
                    "%s: cannot load %s here, still serving the previous: %s",
                    project,
                    row.version,
                    exc,
                )
                self.metrics.models.labels(outcome="replica_load_failed").inc()
                continue
            served = Served(
                project=project,
                version=row.version,
                generation=row.generation,
                loaded=loaded,
                temperature=model.temperature,
                calibrated=model.calibrated,
                gold_confidence=np.asarray(model.gold_confidence, dtype=np.float64),
                gold_correct=np.asarray(model.gold_correct, dtype=bool),
            )
            before = self._served.get(project)
            self._served[project] = served  # the swap: one reference assignment
            if before is not None:
                self.metrics.serving.labels(project=project, version=before.version).set(0)
            self.metrics.serving.labels(project=project, version=row.version).set(1)
            if model.ece_before is not None:
                self.metrics.ece.labels(project=project, stage="before").set(model.ece_before)
            if model.ece_after is not None:
                self.metrics.ece.labels(project=project, stage="after").set(model.ece_after)
            log.info(
                "%s: now serving %s (generation %d, %s)",
                project,
                row.version,
                row.generation,
                f"T={model.temperature:.3f}" if model.calibrated else "uncalibrated",
            )

    def run(self, stop: threading.Event, poll_s: float) -> None:
        while not stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # Postgres away: keep serving what is loaded
                log.warning("model registry refresh failed: %s", exc)
            stop.wait(poll_s)
