"""Deduplication before anyone labels: exact content hashes, MinHash/LSH for text, and
for feature vectors and images (by a small mean-centred grey thumbnail) the centred
random-hyperplane LSH of `strata.sampler.vectors` with an exact cosine check; pure and
vectorised.

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
        acc = _mix(acc ^ np.where(inside, following, _SENTINEL))
    first = pos == (ends - lengths)[owner]
    keep = (pos + size <= ends[owner]) | (first & (lengths[owner] < size))
    counts = np.maximum(lengths - size + 1, 1)
    return acc[keep] >> np.uint64(32), counts.tolist()


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
        """Signatures of texts already through `normalize_text`.

        Shingles are hashed for all texts at once; the permutations run over blocks
        of `block` texts so that the [shingles, num_perm] working set stays in cache.
        """
        a, b = self.params()
        flat, per_text = _shingle_hashes(normalized)
        counts = np.asarray(per_text, dtype=np.int64)
        ends = np.cumsum(counts)
        starts = ends - counts
        out = np.empty((len(normalized), self.num_perm), dtype=np.uint64)
        work = np.empty((0, self.num_perm), dtype=np.uint64)
        for first in range(0, len(normalized), self.block):
            last = min(len(normalized), first + self.block)
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
    """A chunk's signatures prepared against the index: their bucket keys, the indexed
    rows sharing a bucket with each, the buckets each shares with others of the chunk
    (both kept only for the few that have any), and what the chunk has added so far."""

    signatures: NDArray[np.uint32]
    keys: NDArray[np.uint64]  # [n, bands]
    indexed: dict[int, set[int]]  # signature -> index rows sharing a bucket
    shared: dict[int, list[int]]  # signature -> buckets it shares within the chunk
    added: dict[int, str] = field(default_factory=dict)  # signature -> its item id
    added_to: dict[int, list[int]] = field(default_factory=dict)  # bucket -> added signatures


class TextIndex:
    """MinHash/LSH buckets of canonical texts, compact enough for millions of items.

    Signatures live in one uint32 matrix (row per item); bucket keys in a few sorted
    runs, merged as they grow (sizes halve from run to run, so there are about
    log2(n / chunk) of them). A chunk is looked up all at once (`prepare`: sorted
    searches, and the chunk's own collisions by sorting its keys), decided signature by
    signature (`match`, `add`: no work for the many that share no bucket) and indexed
    all at once (`commit`). About 450 bytes per item in all.
    """

    def __init__(self, num_perm: int, bands: int, threshold: float) -> None:
        self.num_perm = num_perm
        self.bands = bands
        self.threshold = threshold
        self._sig = np.empty((1024, num_perm), dtype=np.uint32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._runs: list[tuple[NDArray[np.uint64], NDArray[np.int64]]] = []  # (keys, rows)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._rows

    def prepare(
        self, signatures: NDArray[np.uint64], keys: NDArray[np.uint64] | None = None
    ) -> TextBatch:
        """Bucket keys of a chunk's signatures and, per signature, the indexed rows and
        earlier signatures of the chunk sharing a bucket (`keys`: the signatures'
        `band_keys`, when the caller made them already)."""
        sig = np.atleast_2d(signatures)
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
        return TextBatch(sig.astype(np.uint32), keys, indexed, shared)

    def match(self, batch: TextBatch, i: int) -> tuple[str, float] | None:
        """The most similar text to the batch's i-th, among those indexed and those the
        batch added before it, at or above the threshold."""
        rows = batch.indexed.get(i)
        mates = {j for b in batch.shared.get(i, ()) for j in batch.added_to.get(b, ())}
        if not rows and not mates:
            return None
        ids: list[str] = []
        others = []
        if rows:
            candidates = np.fromiter(rows, dtype=np.int64, count=len(rows))
            ids.extend(self._ids[r] for r in candidates.tolist())
            others.append(self._sig[candidates])
        if mates:
            earlier = sorted(mates)
            ids.extend(batch.added[j] for j in earlier)
            others.append(batch.signatures[earlier])
        similarity = (np.concatenate(others) == batch.signatures[i]).mean(axis=1)
        best = int(np.argmax(similarity))
        if similarity[best] < self.threshold:
            return None
        return ids[best], float(similarity[best])

    def add(self, batch: TextBatch, i: int, item_id: str) -> None:
        """Make the batch's i-th signature canonical item `item_id`: a candidate for the
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
        start = len(self._ids)
        stop = start + len(added)
        if stop > self._sig.shape[0]:
            grown = np.empty((max(stop, 2 * self._sig.shape[0]), self.num_perm), np.uint32)
            grown[:start] = self._sig[:start]
            self._sig = grown
        self._sig[start:stop] = batch.signatures[picked]
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

    def add_text(self, item_id: str, signature: NDArray[np.uint64]) -> None:
        """Index one canonical text (a chunk goes through `text.prepare`, `text.add` and
        `text.commit`)."""
        batch = self.text.prepare(signature)
        self.text.add(batch, 0, item_id)
        self.text.commit(batch)

    def match_text(self, signature: NDArray[np.uint64]) -> tuple[str, float] | None:
        """The most similar indexed text at or above the threshold, if any."""
        return self.text.match(self.text.prepare(signature), 0)


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
