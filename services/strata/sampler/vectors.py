"""Near-duplicate feature vectors and image thumbnails: cosine similarity over
random-hyperplane LSH about a fixed centre, for millions of items; pure and vectorised.

Non-negative vectors (pixel levels, ReLU features: most real features) all lie in one
orthant, where hyperplanes through the origin cut few of them: hashed as they are, they
crowd into a handful of buckets and every look-up compares with thousands. Hashed
after subtracting a centre inside the data, they spread over the buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

SETTLE_ITEMS = 1024  # a project's hashing centre is fixed once its index holds this many


def unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each row scaled to length 1 (a row of zeros stays zeros: it is nobody's duplicate)."""
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    return (x / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)


def _grown(array: NDArray[Any], rows: int) -> NDArray[Any]:
    """`array` with room for `rows` rows (at least twice the rows when it grows)."""
    if rows <= len(array):
        return array
    grown = np.empty((max(rows, 2 * len(array)), *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class _Buckets:
    """A chained hash table in arrays: one entry per row and table of a [rows, tables]
    code matrix (entry row * tables + table) in the slot its table and code hash to,
    with one to two slots per entry. A slot's chain lists its entries newest first."""

    def __init__(self, tables: int) -> None:
        self.tables = tables
        self.heads = np.full(2, -1, dtype=np.int32)
        self.next = np.empty(0, dtype=np.int32)
        self.rows = 0  # rows [0, rows) are linked

    def _slots(
        self, codes: NDArray[np.uint32], tables: NDArray[np.integer[Any]]
    ) -> NDArray[np.int64]:
        key = codes.astype(np.uint64) | (tables.astype(np.uint64) << np.uint64(32))
        with np.errstate(over="ignore"):  # Fibonacci hashing: the top bits of key * phi
            spread = key * np.uint64(0x9E3779B97F4A7C15)
        return (spread >> np.uint64(65 - self.heads.size.bit_length())).astype(np.int64)

    def reserve(self, codes: NDArray[np.uint32], rows: int) -> None:
        """Room for `rows` rows (more slots: the linked rows chained afresh)."""
        if rows * self.tables > self.heads.size:
            slots = 1 << max(1, (rows * self.tables - 1).bit_length())
            self.heads = np.full(slots, -1, dtype=np.int32)
            linked, self.rows = self.rows, 0
            self.link(codes, linked)
        self.next = _grown(self.next, rows * self.tables)

    def link(self, codes: NDArray[np.uint32], stop: int) -> None:
        """Chain in rows [linked so far, stop) of `codes` (room reserved)."""
        entries = np.arange(stop * self.tables - 1, self.rows * self.tables - 1, -1, dtype=np.int32)
        slots = self._slots(codes[self.rows : stop].ravel()[::-1], entries % self.tables)
        # Entries sharing a slot go in over rounds: in each, a slot's head becomes the last
        # entry written to it (the oldest left, as entries run newest to oldest).
        while entries.size:
            self.next[entries] = self.heads[slots]
            self.heads[slots] = entries
            lost = self.heads[slots] != entries
            entries, slots = entries[lost], slots[lost]
        self.rows = stop

    def unlink(self, codes: NDArray[np.uint32], stop: int) -> None:
        """Take rows [stop, linked) out again (the newest: on top of their chains)."""
        entries = np.arange(stop * self.tables, self.rows * self.tables, dtype=np.int64)
        slots = self._slots(codes[stop : self.rows].ravel(), entries % self.tables)
        top = self.heads[slots]
        while (newer := top >= stop * self.tables).any():
            top[newer] = self.next[top[newer]]
        self.heads[slots] = top
        self.rows = stop

    def find(
        self,
        codes: NDArray[np.uint32],
        needles: NDArray[np.uint32],
        tables: NDArray[np.int64],
        cap: int,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(needle, row) for the linked rows whose code is the needle, among the newest
        `cap` entries of its slot (a row found through another table's equal code is a
        harmless extra candidate)."""
        flat = codes.ravel()
        entry = self.heads[self._slots(needles, tables)]
        who = np.flatnonzero(entry >= 0)
        entry = entry[who]
        found: list[NDArray[np.int64]] = []
        for _ in range(cap):
            if not who.size:
                break
            same = flat[entry] == needles[who]
            found += [who[same], (entry[same] // self.tables).astype(np.int64)]
            entry = self.next[entry]
            who, entry = who[entry >= 0], entry[entry >= 0]
        empty = np.empty(0, dtype=np.int64)
        return np.concatenate([empty, *found[::2]]), np.concatenate([empty, *found[1::2]])


@dataclass
class VectorBatch:
    """A chunk's vectors prepared against the index: unit vectors and codes, each one's
    best indexed match at or above the threshold, the earlier vectors of the chunk it
    passes the threshold with (kept only for the few that have any), and what the chunk
    has added so far."""

    units: NDArray[np.float32]
    codes: NDArray[np.uint32]  # [n, tables]
    indexed: dict[int, tuple[int, float]]  # vector -> (index row, cosine)
    mates: dict[int, list[tuple[int, float]]]  # vector -> (earlier vector, cosine)
    zeros: set[int]  # vectors of length 0: nobody's duplicate, never indexed
    added: dict[int, str] = field(default_factory=dict)  # vector -> its item id


class VectorIndex:
    """Canonical vectors of one length (feature vectors, or image thumbnails) found by
    cosine, for millions of items.

    Random-hyperplane LSH (`tables` codes of `bits` signs) of the unit vectors minus a
    fixed centre: hyperplanes through the origin leave non-negative vectors, which all
    lie in one orthant, in a handful of buckets. The centre is the mean unit vector of
    the index's first SETTLE_ITEMS items or more (whole imports, summed in item-id
    order), so a replica or a restart rebuilding the index from stored vectors hashes
    them alike; until then each import re-centres and re-hashes the few there are.

    A look-up probes each table's code and the `probes` codes one uncertain sign away,
    over the newest `cap` entries of a slot. Candidates whose codes differ in more signs
    than those of a vector at the threshold's distance could (seen from the centre) are
    dropped; the rest are checked by the exact cosine of the original vectors, all at
    once.
    """

    def __init__(
        self,
        threshold: float,
        tables: int = 12,
        bits: int = 32,
        probes: int = 6,
        cap: int = 64,
        seed: int = 7,
    ) -> None:
        if not 0 < probes < bits <= 32:
            raise ValueError("need 0 < probes < bits <= 32")
        self.threshold = threshold
        self.tables, self.bits, self.probes, self.cap, self.seed = tables, bits, probes, cap, seed
        self.centre: NDArray[np.float32] | None = None
        self.settled = False
        self._planes = np.empty((0, 0), dtype=np.float32)
        self._units = np.empty((0, 0), dtype=np.float32)
        self._codes = np.empty((0, tables), dtype=np.uint32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._buckets = _Buckets(tables)

    def __len__(self) -> int:
        return len(self._ids)

    def codes(self, vectors: NDArray[np.float32]) -> NDArray[np.uint32]:
        """The bucket codes [n, tables] the index gives vectors now (it has a centre)."""
        return self._hash(unit_rows(np.atleast_2d(vectors)))[0]

    def _hash(
        self, units: NDArray[np.float32]
    ) -> tuple[NDArray[np.uint32], NDArray[np.float32], NDArray[np.float32]]:
        """Codes [n, tables], projections [n, tables, bits] and distances from the centre."""
        n, signs = len(units), self.tables * self.bits
        if self.centre is None:
            raise ValueError("no centre yet: prepare or load vectors first")
        if self._ids and self._units.shape[1] != units.shape[1]:
            raise ValueError(f"vectors of {units.shape[1]} values, not {self._units.shape[1]}")
        if self._planes.shape[1] != units.shape[1]:
            rng = np.random.default_rng([self.seed, units.shape[1]])
            self._planes = rng.standard_normal((signs, units.shape[1]), dtype=np.float32)
        centred = units - self.centre
        projections = (centred @ self._planes.T).reshape(n, self.tables, self.bits)
        words = np.zeros((n, self.tables, 4), dtype=np.uint8)
        words[:, :, : (self.bits + 7) // 8] = np.packbits(projections > 0, 2, bitorder="little")
        radius = np.linalg.norm(centred, axis=1).astype(np.float32)
        codes = words.view(np.uint32)[:, :, 0]
        return codes, projections.astype(np.float32, copy=False), radius

    def _room(self, rows: int, width: int) -> None:
        if not self._ids and self._units.shape[1] != width:
            self._units = np.empty((0, width), dtype=np.float32)
        self._units, self._codes = _grown(self._units, rows), _grown(self._codes, rows)

    def prepare(self, vectors: NDArray[np.float32]) -> VectorBatch:
        """Unit vectors and codes of a chunk's vectors (one length, the index's) and, per
        vector, the indexed vectors and earlier vectors of the chunk it is close to."""
        units = unit_rows(np.atleast_2d(vectors))
        n, valid = len(units), units.any(axis=1)
        if self.centre is None:  # an empty index: the chunk's own mean until it is stored
            self.centre = units[valid].mean(axis=0) if valid.any() else units[0]
        codes, projections, radius = self._hash(units)
        batch = VectorBatch(units, codes, {}, {}, set(np.flatnonzero(~valid).tolist()))
        # Each table's code, and the codes one uncertain sign away.
        low = np.argpartition(np.abs(projections), self.probes - 1, axis=2)[:, :, : self.probes]
        flipped = codes[:, :, None] ^ (np.uint32(1) << low.astype(np.uint32))
        needles = np.concatenate([codes[:, :, None], flipped], axis=2)[valid].ravel()
        owner = np.repeat(np.flatnonzero(valid), self.tables * (1 + self.probes))
        tables = np.tile(np.repeat(np.arange(self.tables), 1 + self.probes), int(valid.sum()))
        # Seen from the centre, a vector within the threshold's distance of one at `radius`
        # is at most asin(distance / radius) away; each sign differs with probability
        # angle / pi: more differing signs than that allows (by 5 sd) rule a pair out.
        ratio = (np.sqrt(2 * (1 - self.threshold)) + 1e-6) / np.maximum(radius, 1e-12)
        q = np.where(ratio < 1, np.arcsin(np.minimum(ratio, 1.0)), np.pi) / np.pi
        signs = self.tables * self.bits
        limit = signs * q + 5 * np.sqrt(signs * q * (1 - q)) + 1
        # The chunk joins the index for the look-up (rows after the indexed ones): one pass
        # finds indexed vectors and earlier vectors of the chunk alike.
        size = len(self._ids)
        self._room(size + n, units.shape[1])
        self._units[size : size + n], self._codes[size : size + n] = units, codes
        self._buckets.reserve(self._codes, size + n)
        self._buckets.link(self._codes, size + n)
        try:
            at, rows = self._buckets.find(self._codes, needles, tables, self.cap)
        finally:
            self._buckets.unlink(self._codes, size)
        who = owner[at]
        earlier = rows < size + who
        who, rows = who[earlier], rows[earlier]
        differ = np.bitwise_count(codes[who] ^ self._codes[rows]).sum(axis=1, dtype=np.int64)
        pairs = np.unique((who * (size + n) + rows)[differ <= limit[who]])
        who, rows = pairs // (size + n), pairs % (size + n)
        cosine = np.einsum("ij,ij->i", units[who], self._units[rows])
        passing = cosine >= self.threshold
        for i, row, sim in zip(*(a[passing].tolist() for a in (who, rows, cosine)), strict=True):
            if row >= size:
                batch.mates.setdefault(i, []).append((row - size, sim))
            elif i not in batch.indexed or sim > batch.indexed[i][1]:
                batch.indexed[i] = (row, sim)
        return batch

    def match(self, batch: VectorBatch, i: int) -> tuple[str, float] | None:
        """The most similar vector to the batch's i-th, among those indexed and those the
        batch added before it, at or above the threshold."""
        best = batch.indexed.get(i)
        found = (self._ids[best[0]], best[1]) if best is not None else None
        for j, sim in batch.mates.get(i, ()):
            if j in batch.added and (found is None or sim > found[1]):
                found = (batch.added[j], sim)
        return found

    def add(self, batch: VectorBatch, i: int, item_id: str) -> None:
        """Make the batch's i-th vector canonical item `item_id` (indexed at `commit`)."""
        if item_id not in self._rows and i not in batch.zeros:
            batch.added[i] = item_id

    def commit(self, batch: VectorBatch) -> None:
        """Index what the batch added."""
        added = [(i, item_id) for i, item_id in batch.added.items() if item_id not in self._rows]
        picked = np.asarray([i for i, _ in added], dtype=np.int64)
        ids = [item_id for _, item_id in added]
        self._append(ids, batch.units[picked], batch.codes[picked])

    def load(
        self, ids: Sequence[str], vectors: NDArray[np.float32], imports: Sequence[int]
    ) -> None:
        """Index stored canonical items of earlier imports, in import order (`imports`:
        each one's import number), as if they were imported one import at a time."""
        units = unit_rows(vectors)
        nonzero = np.flatnonzero(units.any(axis=1)).tolist()
        keep = [k for k in nonzero if ids[k] not in self._rows]
        start = 0
        while start < len(keep):
            stop = len(keep)  # all at once, or one import at a time while the centre moves
            if not self.settled:
                stop = start + 1
                while stop < len(keep) and imports[keep[stop]] == imports[keep[start]]:
                    stop += 1
            self._append([ids[k] for k in keep[start:stop]], units[keep[start:stop]])
            start = stop

    def _append(
        self,
        ids: list[str],
        units: NDArray[np.float32],
        codes: NDArray[np.uint32] | None = None,
    ) -> None:
        if not ids:
            return
        start, stop = len(self._ids), len(self._ids) + len(ids)
        self._room(stop, units.shape[1])
        self._units[start:stop] = units
        for row, item_id in enumerate(ids, start):
            self._ids.append(item_id)
            self._rows[item_id] = row
        if not self.settled:  # re-centre on everything, summed in item-id order
            total = self._units[np.argsort(np.asarray(self._ids))].sum(axis=0, dtype=np.float64)
            self.centre = (total / stop).astype(np.float32)
            start, codes, self._buckets = 0, None, _Buckets(self.tables)
            self.settled = stop >= SETTLE_ITEMS
        self._codes[start:stop] = (
            codes if codes is not None else self._hash(self._units[start:stop])[0]
        )
        self._buckets.reserve(self._codes, stop)
        self._buckets.link(self._codes, stop)
