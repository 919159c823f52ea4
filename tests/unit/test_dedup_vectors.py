"""Near-duplicate feature vectors: non-negative vectors spread over the LSH buckets, the
index agrees with brute force, and an index rebuilt from stored vectors answers alike."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from strata.sampler import store
from strata.sampler.dedup import NearDuplicateIndex
from strata.sampler.pool import Importer, ImportSummary, _decide
from strata.sampler.vectors import SETTLE_ITEMS, VectorIndex, unit_rows
from strata.v1 import common_pb2, sampler_pb2

Matrix = NDArray[np.float32]


def relu_features(n: int, seed: int = 0, dim: int = 64) -> Matrix:
    """Non-negative, like most real features: ReLU of a linear map of a clustered latent
    (per-feature offsets, many zeros)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(dim, 16)) / 4
    latent = rng.normal(size=(8, 16))[rng.integers(0, 8, n)] + rng.normal(size=(n, 16))
    return np.maximum(0, latent @ weights.T + rng.normal(0.3, 0.5, dim)).astype(np.float32)


def copies(originals: Matrix, noise: float | NDArray[np.float64], seed: int = 1) -> Matrix:
    """Copies with multiplicative noise, rescaled (a cosine is blind to scale)."""
    rng = np.random.default_rng(seed)
    jitter = np.exp(rng.normal(size=originals.shape) * noise)
    return (originals * jitter * rng.uniform(0.5, 2.0, (len(originals), 1))).astype(np.float32)


def cosine_rows(a: Matrix, b: Matrix) -> NDArray[np.float64]:
    return np.einsum("ij,ij->i", unit_rows(a).astype(float), unit_rows(b).astype(float))


def decide(index: VectorIndex, vectors: Matrix, chunk: int = 1000) -> list[str | None]:
    """Import-style decisions: each vector's canonical item, or None (then it is added)."""
    out: list[str | None] = []
    for start in range(0, len(vectors), chunk):
        batch = index.prepare(vectors[start : start + chunk])
        for i in range(len(batch.units)):
            found = index.match(batch, i)
            out.append(None if found is None else found[0])
            if found is None:
                index.add(batch, i, f"v{start + i}")
        index.commit(batch)
    return out


def largest_bucket_share(codes: NDArray[np.uint32]) -> float:
    """The share of the vectors in the fullest bucket of any table."""
    return max(np.unique(table, return_counts=True)[1].max() for table in codes.T) / len(codes)


def test_non_negative_vectors_spread_over_the_buckets_once_centred() -> None:
    """10,000 random non-negative vectors (levels in [0, 1), like pixels): with the
    hyperplanes through the origin, as before, one bucket of the 12 signs per table then
    used holds a fifth of them; about the centre, a fraction of a percent."""
    uniform = np.random.default_rng(0).random((10_000, 64), dtype=np.float32)
    for bits, most in ((12, 0.01), (32, 0.001)):
        index = VectorIndex(0.98, bits=bits)
        decide(index, uniform[:2000])  # the centre settles on the first imports
        assert index.settled
        assert largest_bucket_share(index.codes(uniform)) < most
    through_origin = VectorIndex(0.98, bits=12)
    through_origin.centre = np.zeros(64, dtype=np.float32)
    assert largest_bucket_share(through_origin.codes(uniform)) > 0.1
    # ReLU features cluster (so do their buckets), yet no bucket takes much.
    index = VectorIndex(0.98)
    decide(index, relu_features(2000))
    assert largest_bucket_share(index.codes(relu_features(10_000, seed=1))) < 0.005


def test_planted_near_duplicates_are_found_and_merely_similar_vectors_are_not() -> None:
    originals = relu_features(3000)
    index = VectorIndex(0.98)
    assert all(found is None for found in decide(index, originals))
    near = copies(originals[:300], 0.03)
    far = copies(originals[300:600], 0.4, seed=2)
    assert (cosine_rows(near, originals[:300]) >= 0.99).all()
    far = far[cosine_rows(far, originals[300:600]) < 0.97]  # similar, not near-duplicates
    assert len(far) > 250
    batch = index.prepare(np.concatenate([near, far]))
    found = [index.match(batch, i) for i in range(300 + len(far))]
    assert [f[0] if f else None for f in found[:300]] == [f"v{i}" for i in range(300)]
    assert all(f[1] >= 0.99 for f in found[:300] if f)
    assert found[300:] == [None] * len(far)


def test_decisions_agree_with_brute_force() -> None:
    """Every vector linked to a canonical one passes the threshold with it, and at least
    95% of those with a canonical vector above the threshold are linked (every pair
    compared by brute force)."""
    rng = np.random.default_rng(3)
    vectors = relu_features(6000, seed=3)
    source = (rng.random(6000) * np.arange(6000)).astype(int)  # an earlier vector
    planted = (rng.random(6000) < 0.15) & (np.arange(6000) > 0)
    noise = rng.uniform(0.01, 0.15, (int(planted.sum()), 1))  # cosines from about 0.95 up
    vectors[planted] = copies(vectors[source[planted]], noise, seed=4)
    linked = decide(VectorIndex(0.98), vectors)
    units = unit_rows(vectors).astype(float)
    canonical = np.array([found is None for found in linked])
    flagged = [(i, int(found[1:])) for i, found in enumerate(linked) if found is not None]
    assert all(units[i] @ units[j] >= 0.98 - 1e-6 for i, j in flagged)
    kept = np.flatnonzero(canonical)
    cosine = units[kept] @ units[kept].T
    cosine[np.triu_indices(len(kept))] = -1  # earlier canonical vectors only
    missed = int((cosine >= 0.98).any(axis=1).sum())
    assert len(flagged) > 300
    assert len(flagged) / (len(flagged) + missed) >= 0.95


def test_an_index_rebuilt_from_stored_vectors_answers_alike() -> None:
    """A restarted replica loads the canonical vectors import by import (rows within an
    import in any order): same centre, same codes, same answers."""
    vectors = relu_features(5000, seed=5)
    live = VectorIndex(0.98)
    decisions = decide(live, vectors, chunk=700)  # the centre settles after two imports
    stored = [(f"v{i}", i // 700) for i, found in enumerate(decisions) if found is None]
    order = np.random.default_rng(5).permutation(len(stored))
    shuffled = sorted((stored[k] for k in order), key=lambda s: s[1])  # stable: shuffled within
    rebuilt = VectorIndex(0.98)
    ids = [item for item, _ in shuffled]
    rebuilt.load(ids, vectors[[int(item[1:]) for item in ids]], [seq for _, seq in shuffled])
    assert len(rebuilt) == len(live) and rebuilt.settled
    np.testing.assert_array_equal(rebuilt.centre, live.centre)
    queries = np.concatenate([copies(vectors[:400], 0.05, seed=6), relu_features(400, seed=7)])
    batch, again = live.prepare(queries), rebuilt.prepare(queries)
    np.testing.assert_array_equal(batch.codes, again.codes)
    answers = [live.match(batch, i) for i in range(len(queries))]
    assert answers == [rebuilt.match(again, i) for i in range(len(queries))]
    assert sum(a is not None for a in answers) >= 380


def test_the_centre_moves_with_the_first_imports_then_stays() -> None:
    vectors = relu_features(3 * SETTLE_ITEMS, seed=8)
    index = VectorIndex(0.98)
    decide(index, vectors[:500], chunk=500)
    first = index.centre.copy()
    decide(index, vectors[500 : SETTLE_ITEMS + 500], chunk=SETTLE_ITEMS)
    assert index.settled and not np.array_equal(first, index.centre)
    settled = index.centre.copy()
    decide(index, vectors[SETTLE_ITEMS + 500 :], chunk=SETTLE_ITEMS)
    np.testing.assert_array_equal(settled, index.centre)


def test_zero_vectors_and_other_lengths_stay_apart() -> None:
    index = NearDuplicateIndex(vector_threshold=0.98)
    rng = np.random.default_rng(9)
    short = rng.normal(size=(50, 8)).astype(np.float32)
    long = rng.normal(size=(50, 32)).astype(np.float32)
    zero = np.zeros((2, 8), dtype=np.float32)
    assert decide(index.features(8), np.concatenate([short, zero])) == [None] * 52
    assert decide(index.features(32), long) == [None] * 50
    assert len(index) == 100  # the zero vectors are nobody's canonical item
    batch = index.features(8).prepare(np.concatenate([short[:5] * 3, zero]))
    assert [index.features(8).match(batch, i)[0] for i in range(5)] == [f"v{i}" for i in range(5)]
    assert index.features(8).match(batch, 5) is None


def test_a_restarted_importer_rebuilds_the_same_index_from_the_stored_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an import stores (vector column, import number) is what a restarted or
    other replica's importer loads: its index links the next import's copies alike."""
    originals = relu_features(3000, seed=11)
    rows = [feature_row(v, line) for line, v in enumerate(originals)]
    live, summary = Importer(None), ImportSummary()  # type: ignore[arg-type]
    stored = []
    for seq, start in enumerate(range(0, 3000, 600)):  # five imports
        chunk = live.prepare("p", rows[start : start + 600])
        known: dict[str, str] = {}
        for item in _decide(chunk, live._index("p").index, known, [], summary):
            if item.canonical_item_id is None:
                stored.append(
                    store.IndexRow(item.item_id, None, None, None, item.vector.tolist(), None, seq)
                )
    monkeypatch.setattr(store, "index_material", lambda conn, project, after: stored)
    restarted = Importer(None)  # type: ignore[arg-type]
    index = restarted._index("p")
    restarted._refresh(None, "p", index)  # type: ignore[arg-type]
    assert index.watermark == 4 and len(index.index) == len(stored)
    queries = copies(originals[::10], 0.05, seed=12)
    chunk = live.prepare("p", [feature_row(v, line) for line, v in enumerate(queries)])
    before = [i.canonical_item_id for i in _decide(chunk, live._index("p").index, {}, [], summary)]
    after = [i.canonical_item_id for i in _decide(chunk, index.index, {}, [], summary)]
    assert after == before and sum(c is not None for c in before) >= 290


def feature_row(values: NDArray[np.float32], line: int) -> sampler_pb2.ImportRow:
    features = common_pb2.FeatureVector(values=values.tolist())
    return sampler_pb2.ImportRow(line=line, content=common_pb2.ItemContent(features=features))
