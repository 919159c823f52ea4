"""The pool's two jobs: import (validate, deduplicate, store, announce) and hand-out (rank)."""

from __future__ import annotations

import logging
import math
import random
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from strata.common import outbox
from strata.common.db import Database
from strata.common.events import make_event
from strata.common.topics import ITEMS_IMPORTED
from strata.sampler import store
from strata.sampler.dedup import NearDuplicateIndex, content_hash, projection_keys
from strata.sampler.strategies import class_boost, select_batch
from strata.v1 import common_pb2, events_pb2, sampler_pb2

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 100_000
MAX_FEATURES = 65_536


def check_row(row: sampler_pb2.ImportRow) -> str | None:
    """Why a row cannot be imported, or None."""
    kind = row.content.WhichOneof("kind")
    if kind is None:
        return "no content: give text, features or an image"
    if kind == "text":
        if not row.content.text.strip():
            return "text is empty"
        if len(row.content.text) > MAX_TEXT_CHARS:
            return f"text is longer than {MAX_TEXT_CHARS} characters"
    if kind == "features":
        values = row.content.features.values
        if not values or len(values) > MAX_FEATURES:
            return f"features must have 1 to {MAX_FEATURES} values, got {len(values)}"
        if not all(math.isfinite(v) for v in values):
            return "features contain NaN or infinity"
    if kind == "image" and not (row.content.image.png or row.content.image.uri):
        return "image needs PNG bytes or a uri"
    if (
        kind == "image"
        and row.content.image.png
        and not row.content.image.png.startswith(b"\x89PNG")
    ):
        return "image bytes are not a PNG"
    return None


@dataclass
class ImportSummary:
    received: int = 0
    imported: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    gold: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Index:
    index: NearDuplicateIndex
    watermark: datetime = datetime.min
    lock: threading.Lock = field(default_factory=threading.Lock)


class Importer:
    """Validates, deduplicates (exact and near) and stores rows; announces them on the bus."""

    def __init__(
        self,
        db: Database,
        *,
        text_threshold: float = 0.8,
        vector_threshold: float = 0.98,
    ) -> None:
        self.db = db
        self.text_threshold = text_threshold
        self.vector_threshold = vector_threshold
        self._indexes: dict[str, _Index] = {}
        self._lock = threading.Lock()

    def _index(self, project: str) -> _Index:
        with self._lock:
            found = self._indexes.get(project)
            if found is None:
                found = _Index(NearDuplicateIndex(self.text_threshold, self.vector_threshold))
                self._indexes[project] = found
            return found

    def _refresh(self, conn: store.Conn, project: str, idx: _Index) -> None:
        """Bring the index up to date with what was imported (here or by another replica)."""
        for item_id, signature, vector, at in store.index_material(conn, project, idx.watermark):
            if signature is not None:
                idx.index.add_text(item_id, np.frombuffer(signature, dtype=np.uint64))
            if vector is not None:
                v = np.asarray(vector, dtype=np.float32)
                idx.index.add_vector(item_id, v, projection_keys(v[None, :])[0])
            idx.watermark = max(idx.watermark, at.replace(tzinfo=None))

    def import_rows(
        self, project: str, rows: Sequence[sampler_pb2.ImportRow], summary: ImportSummary
    ) -> None:
        """Import one chunk of rows (one transaction); bad rows are reported and skipped."""
        summary.received += len(rows)
        good: list[tuple[sampler_pb2.ImportRow, str]] = []
        for row in rows:
            problem = check_row(row)
            if problem:
                summary.errors.append((row.line, problem))
                continue
            good.append((row, content_hash(row.content)))
        if not good:
            return
        idx = self._index(project)
        with idx.lock:
            try:
                self._import_good(project, good, idx, summary)
            except BaseException:
                # The index may hold rows that were never committed: rebuild it next time.
                idx.index = NearDuplicateIndex(self.text_threshold, self.vector_threshold)
                idx.watermark = datetime.min
                raise

    def _import_good(
        self,
        project: str,
        good: list[tuple[sampler_pb2.ImportRow, str]],
        idx: _Index,
        summary: ImportSummary,
    ) -> None:
        with self.db.transaction() as conn:
            self._refresh(conn, project, idx)
            known = store.existing_hashes(conn, project, [h for _, h in good])
            texts = [r.content.text for r, _ in good if r.content.WhichOneof("kind") == "text"]
            signatures = iter(idx.index.hasher.signatures(texts)) if texts else iter(())
            vectors = [
                np.asarray(r.content.features.values, dtype=np.float32)
                for r, _ in good
                if r.content.WhichOneof("kind") == "features"
            ]
            keys = iter(projection_keys(np.stack(vectors))) if vectors else iter(())
            vector_iter = iter(vectors)
            items: list[store.NewItem] = []
            events: list = []
            for row, digest in good:
                kind = row.content.WhichOneof("kind")
                signature = next(signatures) if kind == "text" else None
                vector = next(vector_iter) if kind == "features" else None
                vkeys = next(keys) if kind == "features" else None
                item_id = uuid.uuid4().hex
                state, canonical, dup_kind, similarity = "pool", None, None, None
                if row.gold_answer:
                    state = "gold"
                    if digest in known:
                        # A gold copy of a pool item would leak its answer: keep it apart.
                        summary.errors.append((row.line, "gold item duplicates a pool item"))
                        continue
                elif digest in known:
                    state, canonical, dup_kind, similarity = (
                        "duplicate",
                        known[digest],
                        "exact",
                        1.0,
                    )
                else:
                    match = None
                    if signature is not None:
                        match = idx.index.match_text(signature)
                    elif vector is not None and vkeys is not None:
                        match = idx.index.match_vector(vector, vkeys)
                    if match is not None:
                        state, canonical, dup_kind, similarity = (
                            "duplicate",
                            match[0],
                            "near",
                            match[1],
                        )
                if state != "duplicate":
                    known[digest] = item_id
                    if state == "pool":
                        if signature is not None:
                            idx.index.add_text(item_id, signature)
                        if vector is not None and vkeys is not None:
                            idx.index.add_vector(item_id, vector, vkeys)
                items.append(
                    store.NewItem(
                        item_id=item_id,
                        project=project,
                        external_id=row.external_id,
                        content=row.content.SerializeToString(),
                        metadata=dict(row.metadata),
                        content_hash=digest,
                        state=state,
                        canonical_item_id=canonical,
                        duplicate_kind=dup_kind,
                        similarity=similarity,
                        gold_answer=row.gold_answer or None,
                        signature=signature.tobytes() if signature is not None else None,
                        vector=vector.tolist() if vector is not None else None,
                    )
                )
                if dup_kind == "exact":
                    summary.exact_duplicates += 1
                elif dup_kind == "near":
                    summary.near_duplicates += 1
                elif state == "gold":
                    summary.gold += 1
                else:
                    summary.imported += 1
                if state in ("pool", "gold"):
                    events.append(_imported_event(project, item_id, row, digest))
            lost = store.insert_items(conn, items)
            if lost:
                # Another import stored the same content first: these become its duplicates.
                raise ConcurrentImport(f"{len(lost)} rows raced another import; retrying")
            outbox.enqueue_many(conn, events)


class ConcurrentImport(Exception):
    """Another import stored the same content in between; the chunk is retried."""


def _imported_event(project: str, item_id: str, row: sampler_pb2.ImportRow, digest: str) -> object:
    msg = events_pb2.ItemImported(
        routing=common_pb2.RoutingMetadata(
            trace_id=uuid.uuid4().hex,
            source_service="sampler",
            project=project,
            reason=common_pb2.ROUTING_REASON_GOLD if row.gold_answer else None,
        ),
        item=common_pb2.Item(
            item_id=item_id,
            project=project,
            content=row.content,
            metadata=dict(row.metadata),
            content_hash=digest,
            external_id=row.external_id,
        ),
        gold_answer=row.gold_answer,
    )
    msg.item.imported_at.GetCurrentTime()
    return make_event(ITEMS_IMPORTED, item_id, msg)


# -- hand-out -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    item_id: str
    score: float
    reason: common_pb2.RoutingReason


def choose(
    candidates: Sequence[store.Candidate],
    explore: Sequence[store.Candidate],
    size: int,
    *,
    cold: bool,
    n_classes: int,
    confused: dict[int, float],
    rng: random.Random,
    explore_fraction: float = 0.1,
) -> list[Choice]:
    """Pick `size` items: diverse and uncertain (or diverse at cold start), plus exploration."""
    picked: list[Choice] = []
    taken: set[str] = set()
    n_explore = min(len(explore), size if cold else max(0, round(size * explore_fraction)))
    main = size - n_explore if not cold else size
    if cold:
        pool = [c for c in explore]
        vectors = [c.vector for c in pool]
        emb = np.asarray(vectors, dtype=np.float32) if all(v for v in vectors) and pool else None
        scores = np.asarray([rng.random() for _ in pool])
        for i in select_batch(scores, emb, main):
            picked.append(Choice(pool[i].item_id, 0.0, common_pb2.ROUTING_REASON_DIVERSITY))
        return picked
    relabel = [c for c in candidates if c.relabel]
    for c in relabel[:main]:
        picked.append(Choice(c.item_id, c.uncertainty or 0.0, common_pb2.ROUTING_REASON_RELABEL))
        taken.add(c.item_id)
    scored = [c for c in candidates if not c.relabel and c.uncertainty is not None]
    if scored and len(picked) < main:
        unc = np.asarray([c.uncertainty for c in scored], dtype=float)
        predicted = np.asarray([c.predicted_class or 0 for c in scored], dtype=np.int64)
        rare = class_boost(predicted, max(n_classes, int(predicted.max()) + 1))
        depth = np.asarray([1.0 + confused.get(int(p), 0.0) for p in predicted])
        final = unc * rare * depth
        have_emb = all(c.embedding for c in scored)
        emb = np.asarray([c.embedding for c in scored], dtype=np.float32) if have_emb else None
        for i in select_batch(final, emb, main - len(picked)):
            if depth[i] > 1.05 and depth[i] >= rare[i]:
                reason = common_pb2.ROUTING_REASON_DEPTH_FEEDBACK
            elif rare[i] > 1.25:
                reason = common_pb2.ROUTING_REASON_RARE_CLASS
            elif emb is not None:
                reason = common_pb2.ROUTING_REASON_UNCERTAINTY
            else:
                reason = common_pb2.ROUTING_REASON_UNCERTAINTY
            picked.append(Choice(scored[i].item_id, float(final[i]), reason))
            taken.add(scored[i].item_id)
    extra = [c for c in explore if c.item_id not in taken]
    rng.shuffle(extra)
    for c in extra[: size - len(picked)]:
        picked.append(
            Choice(c.item_id, float(c.uncertainty or 0.0), common_pb2.ROUTING_REASON_RANDOM_QA)
        )
    return picked
