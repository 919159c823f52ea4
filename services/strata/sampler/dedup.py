"""Deduplication before anyone labels: exact content hashes, MinHash/LSH for text,
random-projection LSH with a cosine check for feature vectors (pure, vectorised).

An index keeps, per project, the LSH buckets of every canonical item; a new
item whose bucket-mates pass the similarity threshold is a near-duplicate of
the most similar one.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from strata.v1 import common_pb2

_WORD = re.compile(r"\w+", re.UNICODE)


def normalize_text(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def content_hash(content: common_pb2.ItemContent) -> str:
    """Exact-duplicate key: text compared after normalising case and spacing."""
    kind = content.WhichOneof("kind")
    h = hashlib.sha256()
    if kind == "text":
        h.update(b"t:" + normalize_text(content.text).encode())
    elif kind == "features":
        h.update(b"f:" + np.asarray(content.features.values, dtype=np.float32).tobytes())
    elif kind == "image":
        h.update(b"i:" + (content.image.png or content.image.uri.encode()))
    else:
        raise ValueError("item content is empty: give text, features or an image")
    return h.hexdigest()


def shingles(text: str, size: int = 3) -> list[int]:
    """crc32 of each word `size`-gram (the whole text when it is shorter)."""
    words = normalize_text(text).split()
    if len(words) < size:
        return [zlib.crc32(" ".join(words).encode())]
    return [
        zlib.crc32(" ".join(words[i : i + size]).encode()) for i in range(len(words) - size + 1)
    ]


@dataclass(frozen=True)
class MinHasher:
    """`num_perm` universal hash functions (a*x + b mod p), fixed by `seed`."""

    num_perm: int = 64
    seed: int = 1

    def seeds(self) -> NDArray[np.uint64]:
        return np.random.default_rng(self.seed).integers(
            0, np.iinfo(np.uint64).max, self.num_perm, dtype=np.uint64, endpoint=True
        )

    def signatures(self, texts: Sequence[str]) -> NDArray[np.uint64]:
        """[n, num_perm] MinHash signatures of many texts, computed in one pass."""
        per_text = [shingles(t) for t in texts]
        lengths = np.asarray([len(s) for s in per_text])
        flat = np.fromiter((h for s in per_text for h in s), dtype=np.uint64, count=lengths.sum())
        hashed = _mix(flat[:, None] ^ self.seeds()[None, :])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.minimum.reduceat(hashed, starts, axis=0)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser: a well-mixed 64-bit hash per seed (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def jaccard_estimate(a: NDArray[np.uint64], b: NDArray[np.uint64]) -> float:
    return float((a == b).mean())


def band_keys(signature: NDArray[np.uint64], bands: int) -> list[bytes]:
    """LSH bucket keys: one per band of the signature."""
    rows = signature.size // bands
    return [bytes([i]) + signature[i * rows : (i + 1) * rows].tobytes() for i in range(bands)]


def projection_keys(
    vectors: NDArray[np.float32], tables: int = 8, bits: int = 12, seed: int = 7
) -> NDArray[np.int64]:
    """[n, tables] random-hyperplane LSH keys (SimHash): close angles share keys."""
    x = np.asarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(seed + x.shape[1])
    planes = rng.normal(size=(tables, bits, x.shape[1])).astype(np.float32)
    signs = (np.einsum("tbd,nd->ntb", planes, x) > 0).astype(np.int64)
    return (signs << np.arange(bits)).sum(2) + (np.arange(tables) << bits)


def cosine(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else 0.0


@dataclass
class NearDuplicateIndex:
    """LSH buckets of a project's canonical items, for text and for feature vectors."""

    text_threshold: float = 0.8
    vector_threshold: float = 0.98
    bands: int = 16
    hasher: MinHasher = field(default_factory=MinHasher)
    _text: dict[bytes, list[str]] = field(default_factory=dict)
    _signatures: dict[str, NDArray[np.uint64]] = field(default_factory=dict)
    _vectors_by_key: dict[int, list[str]] = field(default_factory=dict)
    _vectors: dict[str, NDArray[np.float32]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._signatures) + len(self._vectors)

    def add_text(self, item_id: str, signature: NDArray[np.uint64]) -> None:
        if item_id in self._signatures:
            return
        self._signatures[item_id] = signature
        for key in band_keys(signature, self.bands):
            self._text.setdefault(key, []).append(item_id)

    def match_text(self, signature: NDArray[np.uint64]) -> tuple[str, float] | None:
        """The most similar indexed text at or above the threshold, if any."""
        best: tuple[str, float] | None = None
        seen: set[str] = set()
        for key in band_keys(signature, self.bands):
            for other in self._text.get(key, ()):
                if other in seen:
                    continue
                seen.add(other)
                sim = jaccard_estimate(signature, self._signatures[other])
                if sim >= self.text_threshold and (best is None or sim > best[1]):
                    best = (other, sim)
        return best

    def add_vector(
        self, item_id: str, vector: NDArray[np.float32], keys: NDArray[np.int64]
    ) -> None:
        if item_id in self._vectors:
            return
        self._vectors[item_id] = vector
        for key in keys:
            self._vectors_by_key.setdefault(int(key), []).append(item_id)

    def match_vector(
        self, vector: NDArray[np.float32], keys: NDArray[np.int64]
    ) -> tuple[str, float] | None:
        best: tuple[str, float] | None = None
        seen: set[str] = set()
        for key in keys:
            for other in self._vectors_by_key.get(int(key), ()):
                if other in seen:
                    continue
                seen.add(other)
                sim = cosine(vector, self._vectors[other])
                if sim >= self.vector_threshold and (best is None or sim > best[1]):
                    best = (other, sim)
        return best
