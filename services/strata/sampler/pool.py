"""The pool's two jobs: import (validate, deduplicate, store, announce) and hand-out (rank)."""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from numpy.typing import NDArray

from strata.common import outbox
from strata.common.db import Database
from strata.common.events import make_event
from strata.common.topics import ITEMS_IMPORTED
from strata.sampler import store
from strata.sampler.dedup import (
    NearDuplicateIndex,
    content_hash,
    normalize_text,
    projection_keys,
)
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
    # The newest import number the index has caught up with (-1: nothing yet).
    watermark: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


def random_ids(n: int) -> list[str]:
    """`n` random 128-bit ids as 32 hex digits (one urandom call, not n uuid4 calls)."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


class Importer:
    """Validates, deduplicates (exact and near) and stores rows; announces them on the bus.

    Imports into one project are serialised across replicas by an advisory lock and
    numbered; under the lock a replica first catches its near-duplicate index up on
    what others stored, so deduplication is exact across replicas, not best effort.
    """

    def __init__(
        self,
        db: Database,
        *,
        text_threshold: float = 0.8,
        vector_threshold: float = 0.98,
        activity: outbox.Activity | None = None,
    ) -> None:
        self.db = db
        # Imports in progress; the service's outbox relay gives way to them.
        self.activity = activity or outbox.Activity()
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
        """Bring the index up to date with what other imports stored."""
        material = store.index_material(conn, project, idx.watermark)
        width = 4 * idx.index.hasher.num_perm  # 32-bit values; rows of other widths predate
        texts = [  # this hash family and are left to exact deduplication
            (i, np.frombuffer(sig, dtype=np.uint32).astype(np.uint64))
            for i, sig, _, _ in material
            if sig and len(sig) == width
        ]
        if texts:
            batch = idx.index.text.prepare(np.stack([sig for _, sig in texts]))
            for i, (item_id, _) in enumerate(texts):
                idx.index.text.add(batch, i, item_id)
        for item_id, _, vector, _ in material:
            if vector is not None:
                v = np.asarray(vector, dtype=np.float32)
                idx.index.add_vector(item_id, v, projection_keys(v[None, :])[0])
        if material:
            idx.watermark = max(idx.watermark, material[-1][3])

    def import_rows(
        self, project: str, rows: Sequence[sampler_pb2.ImportRow], summary: ImportSummary
    ) -> None:
        """Import one chunk of rows (one transaction); bad rows are reported and skipped."""
        summary.received += len(rows)
        good: list[tuple[sampler_pb2.ImportRow, str]] = []
        texts: list[str] = []  # normalised, for the exact hash and the MinHash alike
        for row in rows:
            problem = check_row(row)
            if problem:
                summary.errors.append((row.line, problem))
                continue
            if row.content.WhichOneof("kind") == "text":
                texts.append(normalize_text(row.content.text))
                good.append((row, content_hash(row.content, texts[-1])))
            else:
                good.append((row, content_hash(row.content)))
        if not good:
            return
        idx = self._index(project)
        signatures = idx.index.hasher.signatures_of_normalized(texts) if texts else None
        with idx.lock:
            counted = replace(summary, errors=list(summary.errors))
            try:
                seq = self._import_good(project, good, signatures, idx, counted)
            except BaseException:
                # The index may hold rows that were never committed: rebuild it next time.
                idx.index = NearDuplicateIndex(self.text_threshold, self.vector_threshold)
                idx.watermark = -1
                raise
            idx.watermark = seq
        summary.imported = counted.imported
        summary.exact_duplicates = counted.exact_duplicates
        summary.near_duplicates = counted.near_duplicates
        summary.gold = counted.gold
        summary.errors = counted.errors

    def _import_good(
        self,
        project: str,
        good: list[tuple[sampler_pb2.ImportRow, str]],
        text_signatures: NDArray[np.uint64] | None,
        idx: _Index,
        summary: ImportSummary,
    ) -> int:
        """Store one chunk; returns its import number."""
        with self.db.transaction() as conn:
            seq = store.lock_imports(conn, project)
            self._refresh(conn, project, idx)
            known = store.existing_hashes(conn, project, [h for _, h in good])
            signatures = iter(text_signatures if text_signatures is not None else ())
            batch = idx.index.text.prepare(
                text_signatures
                if text_signatures is not None
                else np.empty((0, idx.index.hasher.num_perm), dtype=np.uint64)
            )
            text_row = -1
            vectors = [
                np.asarray(r.content.features.values, dtype=np.float32)
                for r, _ in good
                if r.content.WhichOneof("kind") == "features"
            ]
            keys = iter(projection_keys(np.stack(vectors))) if vectors else iter(())
            vector_iter = iter(vectors)
            ids = iter(random_ids(3 * len(good)))
            imported_at = Timestamp()
            imported_at.GetCurrentTime()
            items: list[store.NewItem] = []
            events: list = []
            for row, digest in good:
                kind = row.content.WhichOneof("kind")
                signature = next(signatures) if kind == "text" else None
                text_row += kind == "text"
                vector = next(vector_iter) if kind == "features" else None
                vkeys = next(keys) if kind == "features" else None
                item_id = next(ids)
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
                        match = idx.index.text.match(batch, text_row)
                    elif vector is not None and vkeys is not None:
                        match = idx.index.match_vector(vector, vkeys)
                    if match is not None:
                        state, canonical = "duplicate", match[0]
                        dup_kind, similarity = "near", match[1]
                if state != "duplicate":
                    known[digest] = item_id
                    if state == "pool":
                        if signature is not None:
                            idx.index.text.add(batch, text_row, item_id)
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
                        signature=(
                            signature.astype(np.uint32).tobytes() if signature is not None else None
                        ),
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
                    events.append(
                        _imported_event(
                            project, item_id, row, digest, imported_at, next(ids), next(ids)
                        )
                    )
            store.insert_items(conn, items, seq)
            outbox.enqueue_many(conn, events)
        return seq


def _imported_event(
    project: str,
    item_id: str,
    row: sampler_pb2.ImportRow,
    digest: str,
    imported_at: Timestamp,
    trace_id: str,
    event_id: str,
) -> object:
    msg = events_pb2.ItemImported(
        routing=common_pb2.RoutingMetadata(
            trace_id=trace_id,
            source_service="sampler",
            project=project,
            reason=common_pb2.ROUTING_REASON_GOLD if row.gold_answer else None,
        ),
        item=common_pb2.Item(
            item_id=item_id,
            project=project,
            content=row.content,
            content_hash=digest,
            external_id=row.external_id,
            imported_at=imported_at,
        ),
        gold_answer=row.gold_answer,
    )
    if row.metadata:  # a map argument to the constructor is copied in Python, slowly
        msg.item.metadata.update(row.metadata)
    return make_event(ITEMS_IMPORTED, item_id, msg, event_id=str(uuid.UUID(event_id)))


# -- hand-out -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    item_id: str
    score: float
    reason: common_pb2.RoutingReason
    spot_check: bool = False


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
    boost_weight: float = 1.0,
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
    # Auto-accept's spot checks keep its precision honest: up to half of what is left.
    spot = [c for c in candidates if c.spot_check and c.item_id not in taken]
    for c in spot[: (main - len(picked) + 1) // 2]:
        picked.append(
            Choice(c.item_id, c.uncertainty or 0.0, common_pb2.ROUTING_REASON_RANDOM_QA, True)
        )
        taken.add(c.item_id)
    scored = [
        c
        for c in candidates
        if c.item_id not in taken and not c.relabel and c.uncertainty is not None
    ]
    if scored and len(picked) < main:
        unc = np.asarray([c.uncertainty for c in scored], dtype=float)
        predicted = np.asarray([c.predicted_class or 0 for c in scored], dtype=np.int64)
        rare = 1.0 + boost_weight * (
            class_boost(predicted, max(n_classes, int(predicted.max()) + 1)) - 1.0
        )
        depth = np.asarray([1.0 + boost_weight * confused.get(int(p), 0.0) for p in predicted])
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
            Choice(
                c.item_id,
                float(c.uncertainty or 0.0),
                common_pb2.ROUTING_REASON_RANDOM_QA,
                c.spot_check,
            )
        )
    return picked
