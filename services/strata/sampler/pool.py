"""The pool's import: validate, deduplicate, store, announce. (Hand-out: `handout`.)"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from strata.common import outbox
from strata.common.db import Database
from strata.sampler import store
from strata.sampler.announce import (
    Announcement,
    announcements,
    duplicate_announcement,
    outbox_rows,
    random_ids,
)
from strata.sampler.dedup import (
    MinHasher,
    NearDuplicateIndex,
    Shingles,
    TextKeys,
    band_keys,
    content_hash,
    image_vector,
    normalize_text,
)
from strata.sampler.handout import Choice as Choice  # re-exported: callers import them here
from strata.sampler.handout import choose as choose
from strata.sampler.vectors import VectorBatch, VectorIndex
from strata.v1 import common_pb2, sampler_pb2

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 100_000
MAX_FEATURES = 65_536


def check_row(
    row: sampler_pb2.ImportRow, features: NDArray[np.float32] | None = None
) -> str | None:
    """Why a row cannot be imported, or None (`features`: the row's feature values as
    an array, when the caller has made it already)."""
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
        if features is None:
            features = np.asarray(values, dtype=np.float32)
        if not np.isfinite(features).all():
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
class PreparedChunk:
    """One chunk after all the work that needs neither the index nor the database: rows
    checked, content hashed, texts signed, image thumbnails made, ids drawn and
    announcements built (those of rows that turn out to be duplicates are dropped)."""

    project: str
    received: int
    rows: list[sampler_pb2.ImportRow]  # the good ones, in order
    item_ids: list[str]
    kinds: list[str]
    digests: list[str]
    contents: list[bytes]  # serialised ItemContent
    texts: TextKeys  # one per text row, in order
    band_keys: NDArray[np.uint64]  # the signatures' LSH bucket keys
    # good row -> its feature vector, or its image's thumbnail (PNG bytes that are not one
    # flat colour; an image given by uri is deduplicated exactly only); they are hashed
    # against the index, whose centre they need
    vectors: dict[int, NDArray[np.float32]]
    thumbnails: dict[int, NDArray[np.float32]]
    announcements: list[Announcement]  # one per good row
    errors: list[tuple[int, str]]


def prepare_chunk(
    project: str, rows: Sequence[sampler_pb2.ImportRow], hasher: MinHasher, bands: int
) -> PreparedChunk:
    """Check, hash, sign and announce one chunk (pure); bad rows become errors with their
    line."""
    good: list[sampler_pb2.ImportRow] = []
    kinds: list[str] = []
    digests: list[str] = []
    texts: list[str] = []  # normalised, for the exact hash and the MinHash alike
    vectors: dict[int, NDArray[np.float32]] = {}
    thumbnails: dict[int, NDArray[np.float32]] = {}
    errors: list[tuple[int, str]] = []
    for row in rows:
        kind = row.content.WhichOneof("kind")
        values = np.asarray(row.content.features.values, np.float32) if kind == "features" else None
        problem = check_row(row, values)
        if not problem and kind == "image" and row.content.image.png:
            try:
                thumbnail = image_vector(row.content.image.png)
            except ValueError as exc:
                problem = str(exc)
            else:
                if thumbnail is not None:
                    thumbnails[len(good)] = thumbnail
        if problem:
            errors.append((row.line, problem))
            continue
        good.append(row)
        kinds.append(kind)
        if kind == "text":
            texts.append(normalize_text(row.content.text))
            digests.append(content_hash(row.content, texts[-1]))
        else:
            digests.append(content_hash(row.content))
            if values is not None:
                vectors[len(good) - 1] = values
    keys = hasher.keys_of_normalized(texts)
    item_ids = random_ids(len(good))
    contents = [row.content.SerializeToString() for row in good]
    return PreparedChunk(
        project=project,
        received=len(rows),
        rows=good,
        item_ids=item_ids,
        kinds=kinds,
        digests=digests,
        contents=contents,
        texts=keys,
        band_keys=band_keys(keys.signatures, bands),
        vectors=vectors,
        thumbnails=thumbnails,
        announcements=announcements(project, item_ids, good, digests, contents),
        errors=errors,
    )


@dataclass
class _Index:
    index: NearDuplicateIndex
    # The newest import number the index has caught up with (-1: nothing yet).
    watermark: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


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
        image_threshold: float = 0.97,
        chunk_rows: int = 5_000,
        activity: outbox.Activity | None = None,
    ) -> None:
        self.db = db
        self.chunk_rows = chunk_rows
        # Imports in progress; the service's outbox relay gives way to them.
        self.activity = activity if activity is not None else outbox.Activity()
        self.text_threshold = text_threshold
        self.vector_threshold = vector_threshold
        self.image_threshold = image_threshold
        self.hasher = MinHasher()
        self._bands = self._new_index().bands
        self._indexes: dict[str, _Index] = {}
        self._lock = threading.Lock()

    def _new_index(self) -> NearDuplicateIndex:
        return NearDuplicateIndex(
            self.text_threshold, self.vector_threshold, self.image_threshold, hasher=self.hasher
        )

    def _index(self, project: str) -> _Index:
        with self._lock:
            found = self._indexes.get(project)
            if found is None:
                found = _Index(self._new_index())
                self._indexes[project] = found
            return found

    def _refresh(self, conn: store.Conn, project: str, idx: _Index) -> None:
        """Bring the index up to date with what other imports stored."""
        material = store.index_material(conn, project, idx.watermark)
        texts = [r for r in material if r.shingles is not None or r.text is not None]
        if texts:
            keys = stored_text_keys(texts, idx.index.hasher)
            batch = idx.index.text.prepare(keys)
            for i, row in enumerate(texts):
                idx.index.text.add(batch, i, row.item_id)
            idx.index.text.commit(batch)
        stored: dict[VectorIndex, list[tuple[str, list[float], int]]] = {}
        for item_id, _, _, _, vector, thumbnail, seq in material:
            if vector is not None:
                stored.setdefault(idx.index.features(len(vector)), []).append(
                    (item_id, vector, seq)
                )
            if thumbnail is not None:
                stored.setdefault(idx.index.images, []).append((item_id, thumbnail, seq))
        for target, rows in stored.items():
            ids, values, seqs = zip(*rows, strict=True)
            target.load(ids, np.asarray(values, dtype=np.float32), seqs)
        if material:
            idx.watermark = max(idx.watermark, material[-1].import_seq)

    def prepare(self, project: str, rows: Sequence[sampler_pb2.ImportRow]) -> PreparedChunk:
        return prepare_chunk(project, rows, self.hasher, self._bands)

    def pipeline(self, summary: ImportSummary) -> ImportPipeline:
        """A stream of rows into `summary`, stored `chunk_rows` at a time, the next chunk
        prepared while one is stored."""
        return ImportPipeline(self, summary, self.chunk_rows)

    def refresh_statistics(self, summary: ImportSummary) -> None:
        """After an import: the planner's statistics, if it stored a tenth of the table or
        more (a bulk import leaves them describing a pool a fraction of its new size)."""
        stored = summary.imported + summary.gold + summary.exact_duplicates
        stored += summary.near_duplicates
        if stored:
            with self.db.transaction() as conn:
                if store.refresh_statistics(conn, stored):
                    log.info("statistics refreshed after an import of %d rows", stored)

    def store(self, chunk: PreparedChunk, summary: ImportSummary) -> None:
        """Deduplicate and store a prepared chunk in one transaction; `summary` counts it
        only once it is committed."""
        counted = replace(summary, errors=[*summary.errors, *chunk.errors])
        counted.received += chunk.received
        if chunk.rows:
            idx = self._index(chunk.project)
            with idx.lock:
                try:
                    seq = self._store(chunk, idx, counted)
                except BaseException:
                    # The index may hold rows that were never committed: rebuild it next time.
                    idx.index = self._new_index()
                    idx.watermark = -1
                    raise
                idx.watermark = seq
        summary.received = counted.received
        summary.imported = counted.imported
        summary.exact_duplicates = counted.exact_duplicates
        summary.near_duplicates = counted.near_duplicates
        summary.gold = counted.gold
        summary.errors = counted.errors

    def _store(self, chunk: PreparedChunk, idx: _Index, summary: ImportSummary) -> int:
        """Store one chunk under the project's import lock; returns its import number."""
        with self.db.transaction() as conn:
            seq = store.lock_imports(conn, chunk.project)
            self._refresh(conn, chunk.project, idx)
            known = store.existing_hashes(conn, chunk.project, chunk.digests)
            announced: list[Announcement] = []
            # Rows stream to Postgres as they are decided.
            store.insert_items(conn, _decide(chunk, idx.index, known, announced, summary), seq)
            outbox.enqueue_encoded(conn, outbox_rows(chunk.project, announced))
        return seq


def stored_text_keys(rows: Sequence[store.IndexRow], hasher: MinHasher) -> TextKeys:
    """The index's keys of stored canonical texts: their stored signatures and shingle
    sets; a row stored before shingle sets were kept (its signature from an older,
    order-blind shingle hash) is keyed afresh from its content."""
    signatures = [
        np.frombuffer(r.signature or b"", dtype=np.uint32).astype(np.uint64) for r in rows
    ]
    sets = [r.shingles or b"" for r in rows]
    older = [i for i, r in enumerate(rows) if r.shingles is None]
    if older:
        fresh = hasher.keys_of_normalized(
            [
                normalize_text(common_pb2.ItemContent.FromString(rows[i].text or b"").text)
                for i in older
            ]
        )
        for k, i in enumerate(older):
            signatures[i] = fresh.signatures[k]
            sets[i] = fresh.shingles.tobytes(k)
    return TextKeys(np.stack(signatures), Shingles.from_bytes(sets))


def _decide(
    chunk: PreparedChunk,
    index: NearDuplicateIndex,
    known: dict[str, str],
    announcements: list[Announcement],
    summary: ImportSummary,
) -> Iterator[store.NewItem]:
    """The chunk's item rows, each pool, gold or a duplicate (exact: its content hash is
    `known`; near: the index finds it); canonical items join `known` and the index, and
    their announcements go to `announcements`. Counts go to `summary`."""
    project = chunk.project
    batch = index.text.prepare(chunk.texts, chunk.band_keys)
    near_batches, prepared = _near_batches(chunk, index)
    width = 4 * index.hasher.num_perm
    signature_bytes = batch.signatures.tobytes()
    text_row = -1
    for position, (item_id, row, kind, digest, content, announcement) in enumerate(
        zip(
            chunk.item_ids,
            chunk.rows,
            chunk.kinds,
            chunk.digests,
            chunk.contents,
            chunk.announcements,
            strict=True,
        )
    ):
        signature = shingles = None
        # A vector-like key's index, its chunk's batch there and its place in that batch.
        near = near_batches.get(position)
        if kind == "text":
            text_row += 1
            signature = signature_bytes[text_row * width : (text_row + 1) * width]
            shingles = batch.shingles.tobytes(text_row)
        state, canonical, dup_kind, similarity = "pool", None, None, None
        if row.gold_answer:
            state = "gold"
            if digest in known:
                # A gold copy of a pool item would leak its answer: keep it apart.
                summary.errors.append((row.line, "gold item duplicates a pool item"))
                continue
        elif digest in known:
            state, canonical, dup_kind, similarity = "duplicate", known[digest], "exact", 1.0
        else:
            match = None
            if signature is not None:
                match = index.text.match(batch, text_row)
            elif near is not None:
                match = near[0].match(near[1], near[2])
            if match is not None:
                state, canonical = "duplicate", match[0]
                dup_kind, similarity = "near", match[1]
        if state == "duplicate":
            # Announced too, marked as a copy: training trains on its propagated label,
            # quality exports it; inference leaves it unscored (it is never handed out).
            announcements.append(
                duplicate_announcement(project, item_id, row, digest, content, canonical)
            )
        else:
            known[digest] = item_id
            announcements.append(announcement)
            if state == "pool":
                if signature is not None:
                    index.text.add(batch, text_row, item_id)
                if near is not None:
                    near[0].add(near[1], near[2], item_id)
        if dup_kind == "exact":
            summary.exact_duplicates += 1
        elif dup_kind == "near":
            summary.near_duplicates += 1
        elif state == "gold":
            summary.gold += 1
        else:
            summary.imported += 1
        yield store.NewItem(
            item_id,
            project,
            row.external_id,
            content,
            dict(row.metadata),
            digest,
            state,
            canonical,
            dup_kind,
            similarity,
            row.gold_answer or None,
            signature,
            chunk.vectors.get(position),
            chunk.thumbnails.get(position),
            # Only a canonical text is ever compared with: a copy's set would be dead weight.
            shingles if state == "pool" else None,
        )
    index.text.commit(batch)
    for target, near_batch in prepared:
        target.commit(near_batch)


def _near_batches(
    chunk: PreparedChunk, index: NearDuplicateIndex
) -> tuple[dict[int, tuple[VectorIndex, VectorBatch, int]], list[tuple[VectorIndex, VectorBatch]]]:
    """Each feature vector's and thumbnail's index (feature vectors by their length),
    the chunk's batch prepared there and its place in that batch; and every batch."""
    groups: dict[VectorIndex, tuple[dict[int, NDArray[np.float32]], list[int]]] = {}
    for position, values in chunk.vectors.items():
        groups.setdefault(index.features(len(values)), (chunk.vectors, []))[1].append(position)
    if chunk.thumbnails:
        groups[index.images] = (chunk.thumbnails, list(chunk.thumbnails))
    found = {}
    prepared = []
    for target, (source, positions) in groups.items():
        batch = target.prepare(np.stack([source[p] for p in positions]))
        found.update({p: (target, batch, j) for j, p in enumerate(positions)})
        prepared.append((target, batch))
    return found, prepared


class ImportPipeline:
    """Streams rows into the pool a chunk at a time: rows are gathered into chunks of
    about `chunk_rows` (one transaction each, whatever size the caller's requests have);
    the caller's thread prepares chunk n+1 (hashes, signatures, announcements: CPU) while
    a writer thread stores chunk n (deduplication, then mostly waiting on Postgres).

    Every row submitted is stored, in order, even when the caller stops with an error;
    a chunk that fails to store fails the stream (the next `submit` or the exit raises
    it) and later chunks are not stored. Use as a context manager.
    """

    def __init__(self, importer: Importer, summary: ImportSummary, chunk_rows: int = 1) -> None:
        self.importer = importer
        self.summary = summary
        self.chunk_rows = chunk_rows
        self._project = ""
        self._rows: list[sampler_pb2.ImportRow] = []
        self._queue: queue.Queue[PreparedChunk | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="import-writer", daemon=True)

    def __enter__(self) -> ImportPipeline:
        self._thread.start()
        return self

    def submit(self, project: str, rows: Sequence[sampler_pb2.ImportRow]) -> None:
        """Queue `rows` for `project` (one project per stream)."""
        self._raise_failure()
        if self._rows and project != self._project:
            self._flush()
        self._project = project
        self._rows.extend(rows)
        if len(self._rows) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            self._queue.put(self.importer.prepare(self._project, rows))

    def _write(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:  # after a failure the rest is drained, not stored
                try:
                    self.importer.store(chunk, self.summary)
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if self._error is None:
                self._flush()
        finally:
            self._queue.put(None)
            self._thread.join()
        if exc_type is None:
            self._raise_failure()
