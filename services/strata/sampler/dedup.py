"""Deduplication before anyone labels: exact content hashes; MinHash/LSH for text, its
candidates checked by the exact Jaccard of their shingle sets; and for feature vectors
and images (by a small mean-centred grey thumbnail) the centred random-hyperplane LSH
of `strata.sampler.vectors` with an exact cosine check. Pure and vectorised.

An index keeps, per project, the LSH buckets of every canonical item; a new
item whose bucket-mates pass the similarity threshold is a near-duplicate of
the most similar one.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from strata.sampler.vectors import VectorIndex
from strata.v1 import common_pb2

_WORD = re.compile(r"\w+", re.UNICODE)


# ASCII letters lowered, digits and "_" kept, anything else a space: what `\w+` and
# lower() make of ASCII text, at a fraction of the cost.
_ASCII_WORDS = (
    bytes(c + 32 if 65 <= c <= 90 else c if chr(c).isalnum() or c == 95 else 32 for c in range(128))
    + b" " * 128
)


def normalize_text(text: str) -> str:
    r"""Lower case, words (`\w+`) joined by single spaces."""
    if text.isascii():
        return b" ".join(text.encode().translate(_ASCII_WORDS).split()).decode()
    return " ".join(_WORD.findall(text.lower()))


def content_hash(content: common_pb2.ItemContent, normalized: str | None = None) -> str:
    """Exact-duplicate key: text compared after normalising case and spacing
    (`normalized`: the text's `normalize_text`, when the caller has it already)."""
    kind = content.WhichOneof("kind")
    h = hashlib.sha256()
    if kind == "text":
        text = normalized if normalized is not None else normalize_text(content.text)
        h.update(b"t:" + text.encode())
    elif kind == "features":
        h.update(b"f:" + np.asarray(content.features.values, dtype=np.float32).tobytes())
    elif kind == "image":
        h.update(b"i:" + (content.image.png or content.image.uri.encode()))
    else:
        raise ValueError("item content is empty: give text, features or an image")
    return h.hexdigest()


def shingles(text: str, size: int = 3) -> list[int]:
    """Hashes of the word `size`-grams of one text (the whole text when it is shorter)."""
    flat, _ = _shingle_hashes([normalize_text(text)], size)
    return [int(h) for h in flat]


_SENTINEL = np.uint64(0x9E3779B97F4A7C15)
_PRIME = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_POWERS: tuple[NDArray[np.uint64], NDArray[np.uint64]] = (
    np.ones(1, dtype=np.uint64),
    np.ones(1, dtype=np.uint64),
)


def _powers(n: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """PRIME**i and PRIME**-i modulo 2**64 for i < n (cached, grown by doubling)."""
    global _POWERS
    powers, inverse = _POWERS
    if powers.size < n:
        size = max(n, 2 * powers.size)
        powers = np.full(size, _PRIME, dtype=np.uint64)
        inverse = np.full(size, pow(_PRIME, -1, 2**64), dtype=np.uint64)
        powers[0] = inverse[0] = 1
        powers = np.cumprod(powers, dtype=np.uint64)
        inverse = np.cumprod(inverse, dtype=np.uint64)
        _POWERS = (powers, inverse)
    return powers, inverse


def _word_hashes(normalized: Sequence[str]) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """A hash of every word of every normalised text (in order), and words per text.

    A polynomial hash of each space-separated word from prefix sums over the
    whole chunk's bytes: no Python work per word.
    """
    joined = " ".join(normalized) + " "
    data = np.frombuffer(joined.encode(), dtype=np.uint8)
    counts = np.fromiter((t.count(" ") + 1 for t in normalized), np.int64, len(normalized))
    powers, inverse = _powers(data.size + 1)
    prefix = np.zeros(data.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.cumsum((data.astype(np.uint64) + np.uint64(1)) * powers[: data.size], out=prefix[1:])
        ends = np.flatnonzero(data == 32)
        starts = np.concatenate([[0], ends[:-1] + 1])
        return _mix((prefix[ends] - prefix[starts]) * inverse[starts]), counts


def _shingle_hashes(
    normalized: Sequence[str], size: int = 3
) -> tuple[NDArray[np.uint64], list[int]]:
    """Flat 32-bit hashes of every normalised text's word `size`-grams (the whole text
    when it is shorter), and how many each text has."""
    hashes, lengths = _word_hashes(normalized)
    ends = np.cumsum(lengths)
    owner = np.repeat(np.arange(len(normalized)), lengths)
    pos = np.arange(hashes.size)
    acc = hashes.copy()
    for j in range(1, size):
        inside = pos + j < ends[owner]
        following = hashes[np.minimum(pos + j, hashes.size - 1)]
        # acc * odd constant: the order of the words counts ("a b c" is not "b a c").
        with np.errstate(over="ignore"):
            acc = _mix((acc * _SENTINEL) ^ np.where(inside, following, _SENTINEL))
    first = pos == (ends - lengths)[owner]
    keep = (pos + size <= ends[owner]) | (first & (lengths[owner] < size))
    counts = np.maximum(lengths - size + 1, 1)
    return acc[keep] >> np.uint64(32), counts.tolist()


@dataclass(frozen=True)
class Shingles:
    """Several texts' shingle sets end to end: each text's distinct 32-bit shingle
    hashes, sorted, at `values[offsets[i]:offsets[i + 1]]`."""

    values: NDArray[np.uint32]
    offsets: NDArray[np.int64]  # len(texts) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, i: int) -> NDArray[np.uint32]:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def sizes(self) -> NDArray[np.int64]:
        return np.diff(self.offsets)

    def take(self, rows: NDArray[np.int64] | Sequence[int]) -> Shingles:
        """The sets of `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        sizes = self.offsets[rows + 1] - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        at = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1])
        return Shingles(self.values[at], offsets)

    def tobytes(self, i: int) -> bytes:
        return self.of(i).astype("<u4").tobytes()

    @staticmethod
    def from_bytes(stored: Sequence[bytes]) -> Shingles:
        """The sets `tobytes` gave, in order."""
        offsets = np.zeros(len(stored) + 1, dtype=np.int64)
        np.cumsum([len(b) // 4 for b in stored], out=offsets[1:])
        values = np.frombuffer(b"".join(stored), dtype="<u4").astype(np.uint32)
        return Shingles(values, offsets)

    @staticmethod
    def concat(parts: Sequence[Shingles]) -> Shingles:
        if not parts:
            return Shingles(np.empty(0, np.uint32), np.zeros(1, np.int64))
        shifts = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
        offsets = np.concatenate(
            [[0]] + [p.offsets[1:] + shift for p, shift in zip(parts, shifts, strict=True)]
        )
        return Shingles(np.concatenate([p.values for p in parts]), offsets.astype(np.int64))


def shingle_sets(flat: NDArray[np.uint64], counts: Sequence[int]) -> Shingles:
    """Each text's distinct shingle hashes, sorted (`flat`, `counts`: `_shingle_hashes`,
    whose hashes are 32-bit)."""
    per = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(per), dtype=np.uint64), per)
    # One sort of (text, hash) packed in 64 bits: by text, then by hash.
    keyed = np.sort((owner << np.uint64(32)) | flat)
    keep = np.ones(keyed.size, dtype=bool)
    keep[1:] = keyed[1:] != keyed[:-1]
    kept = keyed[keep]
    offsets = np.zeros(len(per) + 1, dtype=np.int64)
    np.cumsum(
        np.bincount((kept >> np.uint64(32)).astype(np.int64), minlength=len(per)), out=offsets[1:]
    )
    return Shingles((kept & np.uint64(0xFFFFFFFF)).astype(np.uint32), offsets)


def jaccard(query: NDArray[np.uint32], others: Shingles) -> NDArray[np.float64]:
    """The exact Jaccard similarity of one sorted shingle set to each of `others`."""
    sizes = others.sizes()
    if query.size == 0 or others.values.size == 0:
        return np.zeros(len(others))
    at = np.minimum(np.searchsorted(query, others.values), query.size - 1)
    shared_each = (query[at] == others.values).astype(np.float64)
    owner = np.repeat(np.arange(len(others)), sizes)
    shared = np.bincount(owner, weights=shared_each, minlength=len(others))
    return shared / (query.size + sizes - shared)


@dataclass(frozen=True)
class TextKeys:
    """What the index needs of a run of texts: MinHash signatures (for the LSH
    buckets) and shingle sets (for the exact check of the candidates)."""

    signatures: NDArray[np.uint64]  # [n, num_perm]
    shingles: Shingles

    def __len__(self) -> int:
        return len(self.signatures)

    def take(self, rows: NDArray[np.int64] | Sequence[int]) -> TextKeys:
        rows = np.asarray(rows, dtype=np.int64)
        return TextKeys(self.signatures[rows], self.shingles.take(rows))

    def slice(self, start: int, stop: int) -> TextKeys:
        return self.take(np.arange(start, stop))


@dataclass(frozen=True)
class MinHasher:
    """`num_perm` multiply-shift hash functions ((a*x + b) >> 32, a odd), fixed by `seed`."""

    num_perm: int = 64
    seed: int = 1
    block: int = 128

    def params(self) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
        rng = np.random.default_rng(self.seed)
        top = np.iinfo(np.uint64).max
        a = rng.integers(0, top, self.num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
        b = rng.integers(0, top, self.num_perm, dtype=np.uint64, endpoint=True)
        return a, b

    def signatures(self, texts: Sequence[str]) -> NDArray[np.uint64]:
        """[n, num_perm] MinHash signatures of many texts (32-bit values, uint64 storage)."""
        return self.signatures_of_normalized([normalize_text(t) for t in texts])

    def signatures_of_normalized(self, normalized: Sequence[str]) -> NDArray[np.uint64]:
        """Signatures of texts already through `normalize_text`."""
        flat, per_text = _shingle_hashes(normalized)
        return self._sign(flat, per_text)

    def keys(self, texts: Sequence[str]) -> TextKeys:
        """Signatures and shingle sets of many texts."""
        return self.keys_of_normalized([normalize_text(t) for t in texts])

    def keys_of_normalized(self, normalized: Sequence[str]) -> TextKeys:
        """Signatures and shingle sets of texts already through `normalize_text`."""
        flat, per_text = _shingle_hashes(normalized)
        return TextKeys(self._sign(flat, per_text), shingle_sets(flat, per_text))

    def _sign(self, flat: NDArray[np.uint64], per_text: list[int]) -> NDArray[np.uint64]:
        """Signatures from every text's shingle hashes (`_shingle_hashes`).

        Shingles are hashed for all texts at once; the permutations run over blocks
        of `block` texts so that the [shingles, num_perm] working set stays in cache.
        """
        a, b = self.params()
        n = len(per_text)
        counts = np.asarray(per_text, dtype=np.int64)
        ends = np.cumsum(counts)
        starts = ends - counts
        out = np.empty((n, self.num_perm), dtype=np.uint64)
        work = np.empty((0, self.num_perm), dtype=np.uint64)
        for first in range(0, n, self.block):
            last = min(n, first + self.block)
            lo, hi = int(starts[first]), int(ends[last - 1])
            if work.shape[0] < hi - lo:
                work = np.empty((hi - lo, self.num_perm), dtype=np.uint64)
            hashed = work[: hi - lo]
            np.multiply(flat[lo:hi, None], a[None, :], out=hashed)
            hashed += b[None, :]
            hashed >>= np.uint64(32)
            out[first:last] = np.minimum.reduceat(
                hashed.astype(np.uint32), starts[first:last] - lo, axis=0
            )
        return out


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser: a well-mixed 64-bit hash (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def jaccard_estimate(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> float:
    return float((a == b).mean())


def band_keys(signatures: NDArray[np.uint64], bands: int) -> NDArray[np.uint64]:
    """LSH bucket keys, [n, bands] (or [bands] for one signature): a hash of each band."""
    sig = np.atleast_2d(signatures)
    rows = sig.shape[1] // bands
    parts = sig[:, : bands * rows].reshape(sig.shape[0], bands, rows)
    acc = np.broadcast_to(np.arange(bands, dtype=np.uint64) * _SENTINEL, parts.shape[:2])
    for r in range(rows):
        acc = _mix(acc ^ parts[:, :, r])
    return acc if signatures.ndim == 2 else acc[0]


@dataclass
class TextBatch:
    """A chunk's keys prepared against the index: their bucket keys, the indexed rows
    sharing a bucket with each, the buckets each shares with others of the chunk (both
    kept only for the few that have any), and what the chunk has added so far."""

    signatures: NDArray[np.uint32]
    shingles: Shingles
    keys: NDArray[np.uint64]  # [n, bands]
    indexed: dict[int, set[int]]  # text -> index rows sharing a bucket
    shared: dict[int, list[int]]  # text -> buckets it shares within the chunk
    added: dict[int, str] = field(default_factory=dict)  # text -> its item id
    added_to: dict[int, list[int]] = field(default_factory=dict)  # bucket -> added texts


class TextIndex:
    """MinHash/LSH buckets of canonical texts, compact enough for millions of items.

    Bucket keys live in a few sorted runs, merged as they grow (sizes halve from run to
    run, so there are about log2(n / chunk) of them); each text's shingle set lives end
    to end with the others'. A chunk is looked up all at once (`prepare`: sorted
    searches, and the chunk's own collisions by sorting its keys), decided text by
    text (`match`: the exact Jaccard of the few that share a bucket, no work for the
    many that share none; `add`) and indexed all at once (`commit`). The MinHash
    estimate only finds candidates: it errs by about 0.05 at 64 permutations, which
    near the threshold would miss copies and merge distinct texts. About 300 bytes
    per item in all.
    """

    def __init__(self, num_perm: int, bands: int, threshold: float) -> None:
        self.num_perm = num_perm
        self.bands = bands
        self.threshold = threshold
        self._values = np.empty(16_384, dtype=np.uint32)
        self._offsets = np.zeros(1025, dtype=np.int64)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._runs: list[tuple[NDArray[np.uint64], NDArray[np.int64]]] = []  # (keys, rows)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._rows

    def _stored(self) -> Shingles:
        n = len(self._ids)
        return Shingles(self._values[: self._offsets[n]], self._offsets[: n + 1])

    def prepare(self, texts: TextKeys, keys: NDArray[np.uint64] | None = None) -> TextBatch:
        """Bucket keys of a chunk's texts and, per text, the indexed rows and earlier
        texts of the chunk sharing a bucket (`keys`: the signatures' `band_keys`, when
        the caller made them already)."""
        sig = np.atleast_2d(texts.signatures)
        if keys is None:
            keys = band_keys(sig, self.bands)
        keys = np.atleast_2d(keys)
        flat = keys.ravel()
        # Sorted needles walk the sorted keys in order: far fewer cache misses.
        order = np.argsort(flat, kind="stable")
        needles = flat[order]
        indexed: dict[int, set[int]] = {}
        for run_keys, run_rows in self._runs:
            at = np.searchsorted(run_keys, needles)
            at[at == run_keys.size] = 0
            hit = np.flatnonzero(run_keys[at] == needles)
            for position, row in zip(
                (order[hit] // self.bands).tolist(), run_rows[at[hit]].tolist(), strict=True
            ):
                indexed.setdefault(position, set()).add(row)
        shared: dict[int, list[int]] = {}
        same = needles[1:] == needles[:-1]
        if same.any():  # equal keys are adjacent in sorted order
            bucket = np.cumsum(np.concatenate([[True], ~same])) - 1
            crowded = np.bincount(bucket)[bucket] > 1
            for position, b in zip(
                (order[crowded] // self.bands).tolist(), bucket[crowded].tolist(), strict=True
            ):
                shared.setdefault(position, []).append(b)
        return TextBatch(sig.astype(np.uint32), texts.shingles, keys, indexed, shared)

    def match(self, batch: TextBatch, i: int) -> tuple[str, float] | None:
        """The most similar text to the batch's i-th (exact Jaccard of their shingle
        sets), among those indexed and those the batch added before it, at or above
        the threshold."""
        rows = batch.indexed.get(i)
        mates = {j for b in batch.shared.get(i, ()) for j in batch.added_to.get(b, ())}
        if not rows and not mates:
            return None
        ids: list[str] = []
        others = []
        if rows:
            candidates = np.fromiter(rows, dtype=np.int64, count=len(rows))
            ids.extend(self._ids[r] for r in candidates.tolist())
            others.append(self._stored().take(candidates))
        if mates:
            earlier = sorted(mates)
            ids.extend(batch.added[j] for j in earlier)
            others.append(batch.shingles.take(earlier))
        sets = others[0] if len(others) == 1 else Shingles.concat(others)
        similarity = jaccard(batch.shingles.of(i), sets)
        best = int(np.argmax(similarity))
        if similarity[best] < self.threshold:
            return None
        return ids[best], float(similarity[best])

    def add(self, batch: TextBatch, i: int, item_id: str) -> None:
        """Make the batch's i-th text canonical item `item_id`: a candidate for the
        rest of the batch now, indexed for later batches at `commit`."""
        if item_id not in self._rows:
            batch.added[i] = item_id
            for b in batch.shared.get(i, ()):
                batch.added_to.setdefault(b, []).append(i)

    def commit(self, batch: TextBatch) -> None:
        """Index what the batch added."""
        added = [(i, item_id) for i, item_id in batch.added.items() if item_id not in self._rows]
        if not added:
            return
        picked = np.fromiter((i for i, _ in added), dtype=np.int64, count=len(added))
        self._append(batch.shingles.take(picked))
        start = len(self._ids)
        stop = start + len(added)
        for row, (_, item_id) in enumerate(added, start):
            self._ids.append(item_id)
            self._rows[item_id] = row
        keys = batch.keys[picked].ravel()
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), self.bands)
        order = np.argsort(keys, kind="stable")
        self._runs.append((keys[order], rows[order]))
        # Merge while a run is no larger than the one after it (a timsort of sorted runs).
        while len(self._runs) > 1 and self._runs[-2][0].size <= 2 * self._runs[-1][0].size:
            (k1, r1), (k2, r2) = self._runs[-2], self._runs[-1]
            keys, rows = np.concatenate([k1, k2]), np.concatenate([r1, r2])
            order = np.argsort(keys, kind="stable")
            self._runs[-2:] = [(keys[order], rows[order])]

    def _append(self, sets: Shingles) -> None:
        """Store the shingle sets of the rows about to be indexed (grown by doubling)."""
        n = len(self._ids)
        used = int(self._offsets[n])
        need_values, need_rows = used + sets.values.size, n + len(sets) + 1
        if need_values > self._values.size:
            grown = np.empty(max(need_values, 2 * self._values.size), dtype=np.uint32)
            grown[:used] = self._values[:used]
            self._values = grown
        if need_rows > self._offsets.size:
            offsets = np.zeros(max(need_rows, 2 * self._offsets.size), dtype=np.int64)
            offsets[: n + 1] = self._offsets[: n + 1]
            self._offsets = offsets
        self._values[used:need_values] = sets.values
        self._offsets[n + 1 : need_rows] = used + sets.offsets[1:]


@dataclass
class NearDuplicateIndex:
    """LSH buckets of a project's canonical items: texts, feature vectors and images
    (by their `image_vector`)."""

    text_threshold: float = 0.8
    vector_threshold: float = 0.98
    image_threshold: float = 0.97
    bands: int = 0  # 0: four signature rows per band (a 0.8 threshold is found ~always)
    hasher: MinHasher = field(default_factory=MinHasher)

    def __post_init__(self) -> None:
        if self.bands <= 0:
            self.bands = max(1, self.hasher.num_perm // 4)
        self.text = TextIndex(self.hasher.num_perm, self.bands, self.text_threshold)
        self.vectors: dict[int, VectorIndex] = {}  # feature vectors by their length
        self.images = VectorIndex(self.image_threshold)

    def __len__(self) -> int:
        return len(self.text) + sum(map(len, self.vectors.values())) + len(self.images)

    def features(self, length: int) -> VectorIndex:
        """The index of feature vectors of `length` values (compared only with each other)."""
        found = self.vectors.get(length)
        if found is None:
            found = self.vectors[length] = VectorIndex(self.vector_threshold)
        return found

    def add_text(self, item_id: str, text: TextKeys) -> None:
        """Index one canonical text (`text`: its keys; a chunk goes through
        `text.prepare`, `text.add` and `text.commit`)."""
        batch = self.text.prepare(text)
        self.text.add(batch, 0, item_id)
        self.text.commit(batch)

    def match_text(self, text: TextKeys) -> tuple[str, float] | None:
        """The most similar indexed text at or above the threshold, if any."""
        return self.text.match(self.text.prepare(text), 0)


THUMBNAIL_SIDE = 16
MAX_IMAGE_PIXELS = 50_000_000


def image_vector(png: bytes, side: int = THUMBNAIL_SIDE) -> NDArray[np.float32] | None:
    """A near-duplicate key for an image: its grey levels averaged down to `side` x
    `side`, minus their mean. Copies that are rescaled, re-encoded, slightly noisy or
    brighter keep a cosine near 1 to the original; different pictures do not. None for
    an image of one flat colour (nothing to compare: it is deduplicated exactly only).
    Raises ValueError for bytes that do not decode as an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image is {width}x{height}: over {MAX_IMAGE_PIXELS:,} pixels")
            grey = image.convert("L").resize((side, side), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"image does not decode: {exc}") from None
    levels = np.asarray(grey, dtype=np.float32).ravel()
    levels -= levels.mean()
    if float(np.abs(levels).max()) < 1.0:  # under one grey level anywhere: flat
        return None
    return levels
