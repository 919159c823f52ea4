"""Active-learning strategies on hand-computed cases, diversity, and deduplication (no I/O)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from strata.sampler.dedup import (
    MinHasher,
    NearDuplicateIndex,
    content_hash,
    jaccard_estimate,
)
from strata.sampler.pool import choose
from strata.sampler.store import Candidate
from strata.sampler.strategies import (
    bald,
    class_boost,
    entropy,
    least_confidence,
    margin,
    select_batch,
)
from strata.v1 import common_pb2

P = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])


def test_uncertainty_scores_by_hand() -> None:
    np.testing.assert_allclose(least_confidence(P), [0.3, 0.6, 2 / 3])
    np.testing.assert_allclose(margin(P), [1 - 0.5, 1 - 0.05, 1.0])
    expected = [-sum(p * math.log(p) for p in row) for row in P]
    np.testing.assert_allclose(entropy(P), expected)
    assert entropy(P)[2] == pytest.approx(math.log(3))
    # Every strategy ranks the uniform row as the most uncertain, the peaked one as the least.
    for score in (least_confidence(P), margin(P), entropy(P)):
        assert list(np.argsort(-score)) == [2, 1, 0]


def test_bald_separates_disagreeing_samples_from_shared_doubt() -> None:
    agree = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])  # both unsure the same way
    disagree = np.array([[[0.99, 0.01]], [[0.01, 0.99]]])  # each sure, of different things
    assert bald(agree)[0] == pytest.approx(0.0, abs=1e-9)
    expected = math.log(2) - (-(0.99 * math.log(0.99) + 0.01 * math.log(0.01)))
    assert bald(disagree)[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="MC samples"):
        bald(np.ones((1, 2, 2)) / 2)


def test_bad_probability_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="n_classes >= 2"):
        margin(np.ones((3, 1)))


def test_diverse_batch_covers_every_cluster_plain_top_k_does_not() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 16)) * 10
    cluster = np.repeat(np.arange(5), 200)
    emb = centers[cluster] + rng.normal(size=(1000, 16))
    # Cluster 0 is the most uncertain by far: top-k takes only from it.
    scores = np.where(cluster == 0, 0.9, 0.5) + rng.uniform(0, 0.05, 1000)
    plain = select_batch(scores, emb, 10, diversity="none")
    assert set(cluster[plain]) == {0}
    diverse = select_batch(scores, emb, 10)
    assert set(cluster[diverse]) == {0, 1, 2, 3, 4}
    assert len(set(diverse.tolist())) == 10
    assert diverse[0] == int(np.argmax(scores))


def test_class_boost_favours_rare_predicted_classes() -> None:
    boost = class_boost([0, 0, 0, 0, 1], 3)
    assert boost[0] == pytest.approx(1.0)
    assert boost[4] > boost[0]


def test_exact_hash_ignores_case_and_spacing_only() -> None:
    a = common_pb2.ItemContent(text="The  Quick brown fox")
    b = common_pb2.ItemContent(text="the quick BROWN fox ")
    c = common_pb2.ItemContent(text="the quick brown cat")
    assert content_hash(a) == content_hash(b) != content_hash(c)
    with pytest.raises(ValueError, match="empty"):
        content_hash(common_pb2.ItemContent())


def test_minhash_estimates_jaccard_and_the_index_finds_near_duplicates() -> None:
    base = "patient reports mild headache and nausea after taking the new medication twice daily"
    near = base.replace("twice daily", "two times daily")
    other = "the quarterly revenue grew by eight percent driven by strong cloud subscriptions"
    keys = MinHasher(num_perm=128).keys([base, near, other])
    sig = keys.signatures
    words = base.split()
    grams_a = {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}
    words_b = near.split()
    grams_b = {" ".join(words_b[i : i + 3]) for i in range(len(words_b) - 2)}
    true_j = len(grams_a & grams_b) / len(grams_a | grams_b)
    assert jaccard_estimate(sig[0], sig[1]) == pytest.approx(true_j, abs=0.12)
    assert jaccard_estimate(sig[0], sig[2]) < 0.1
    index = NearDuplicateIndex(text_threshold=0.6, hasher=MinHasher(num_perm=128))
    index.add_text("a", keys.take([0]))
    found = index.match_text(keys.take([1]))
    # The exact Jaccard decides, not the estimate.
    assert found is not None and found == ("a", pytest.approx(true_j))
    assert index.match_text(keys.take([2])) is None


def test_vector_index_matches_by_cosine() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(3, 64)).astype(np.float32)
    near = v[0] + rng.normal(scale=0.01, size=64).astype(np.float32)
    index = NearDuplicateIndex(vector_threshold=0.98)
    vectors = index.features(64)
    batch = vectors.prepare(v)
    for i in range(3):
        vectors.add(batch, i, str(i))
    vectors.commit(batch)
    batch = vectors.prepare(np.stack([near, -v[0]]))
    match = vectors.match(batch, 0)
    assert match is not None and match[0] == "0" and match[1] > 0.99
    assert vectors.match(batch, 1) is None


def test_text_index_finds_near_duplicates_across_chunks_and_merges() -> None:
    """Chunks whose bucket keys land in several sorted runs that then merge:
    near-duplicates of items from any earlier chunk, or earlier in the same chunk, are found."""
    rng = random.Random(3)
    vocab = [f"v{i}" for i in range(4000)]
    originals = [" ".join(rng.choice(vocab) for _ in range(25)) for _ in range(9000)]
    hasher = MinHasher()
    index = NearDuplicateIndex(text_threshold=0.8, hasher=hasher)
    for start in range(0, 9000, 4500):  # the second chunk comes after a merge
        batch = index.text.prepare(hasher.keys(originals[start : start + 4500]))
        for i in range(4500):
            assert index.text.match(batch, i) is None
            index.text.add(batch, i, f"o{start + i}")
        index.text.commit(batch)
    assert len(index) == 9000
    picks = rng.sample(range(9000), 300)
    edited = [originals[p] + " " + rng.choice(vocab) for p in picks]
    batch = index.text.prepare(hasher.keys([*edited, edited[0] + " again"]))
    found = [index.text.match(batch, i) for i in range(len(picks))]
    recall = sum(f is not None and f[0] == f"o{p}" for f, p in zip(found, picks, strict=True))
    assert recall >= 0.95 * len(picks)
    # Within one chunk: an item added earlier in the chunk is a candidate too.
    index.text.add(batch, 0, "fresh")
    twin = index.text.match(batch, len(picks))
    assert twin is not None and twin[0] in {"fresh", f"o{picks[0]}"}


def test_a_chunk_of_near_copies_of_one_text_keeps_one_canonical_item() -> None:
    """Thousands of signatures in the same buckets (one text, lightly edited many times):
    the first is canonical, every other matches it or a canonical copy, and bucket
    collisions inside the chunk cost work per collision, not per pair."""
    rng = random.Random(9)
    vocab = [f"v{i}" for i in range(4000)]
    base = [rng.choice(vocab) for _ in range(60)]
    copies = [" ".join([*base, rng.choice(vocab)]) for _ in range(3000)]
    hasher = MinHasher()
    index = NearDuplicateIndex(text_threshold=0.8, hasher=hasher)
    batch = index.text.prepare(hasher.keys(copies))
    canonical = []
    for i in range(len(copies)):
        found = index.text.match(batch, i)
        if found is None:
            index.text.add(batch, i, f"c{i}")
            canonical.append(i)
        else:
            assert found[1] >= 0.8
    index.text.commit(batch)
    assert canonical == [0]
    assert len(index) == len(canonical)
    # A later chunk finds them in the index.
    later = index.text.prepare(hasher.keys([" ".join(base)]))
    assert index.text.match(later, 0) is not None


def _candidate(i: int, uncertainty: float, *, spot: bool = False) -> Candidate:
    return Candidate(f"i{i}", uncertainty, i % 3, None, None, spot)


def test_spot_checks_go_out_first_but_take_at_most_half_the_batch() -> None:
    ranked = [_candidate(i, 1.0 - i / 100) for i in range(40)]
    spots = [_candidate(100 + i, 0.01, spot=True) for i in range(30)]
    picked = choose(
        spots + ranked,
        [],
        10,
        cold=False,
        n_classes=3,
        confused={},
        rng=random.Random(0),
        explore_fraction=0.0,
    )
    assert len(picked) == 10 and len({c.item_id for c in picked}) == 10
    checked = [c for c in picked if c.spot_check]
    assert len(checked) == 5  # half of the batch
    assert all(c.reason == common_pb2.ROUTING_REASON_RANDOM_QA for c in checked)
    # The rest is the most uncertain of the ranked items.
    rest = [c.item_id for c in picked if not c.spot_check]
    assert set(rest) <= {f"i{i}" for i in range(10)}


def test_the_random_strategy_draws_uniformly_whatever_the_scores() -> None:
    """The baseline active learning is measured against: no ranking, boost or diversity.
    Over many batches every item of the random slice is drawn about equally often, the
    most uncertain no more than the others (chi-square against uniform)."""
    from scipy.stats import chisquare

    ranked = [_candidate(i, 1.0 - i / 100) for i in range(40)]
    explore = [_candidate(i, 1.0 - i / 100) for i in range(40)]
    rng = random.Random(3)
    counts = {c.item_id: 0 for c in explore}
    for _ in range(2000):
        picked = choose(
            ranked,
            explore,
            10,
            cold=False,
            n_classes=3,
            confused={0: 1.0},
            rng=rng,
            explore_fraction=0.0,
            uniform=True,
        )
        assert len({c.item_id for c in picked}) == 10
        assert {c.reason for c in picked} == {common_pb2.ROUTING_REASON_RANDOM_QA}
        for c in picked:
            counts[c.item_id] += 1
    assert chisquare(list(counts.values())).pvalue > 1e-3
    top = sum(counts[f"i{i}"] for i in range(10))  # the ten most uncertain
    assert abs(top / sum(counts.values()) - 0.25) < 0.03


def test_the_random_strategy_serves_spot_checks_first_and_is_random_cold() -> None:
    explore = [_candidate(i, 0.5) for i in range(100)]
    spots = [_candidate(100 + i, 0.01, spot=True) for i in range(6)]
    picked = choose(
        spots,
        explore,
        9,
        cold=False,
        n_classes=3,
        confused={},
        rng=random.Random(0),
        uniform=True,
    )
    assert [c.spot_check for c in picked[:5]] == [True] * 5  # half of 9, rounded up
    assert sum(c.spot_check for c in picked) == 5
    assert {c.item_id for c in picked[5:]} <= {c.item_id for c in explore}
    cold = choose(
        [],
        explore,
        16,
        cold=True,
        n_classes=3,
        confused={},
        rng=random.Random(0),
        uniform=True,
    )
    assert len(cold) == 16
    assert {c.reason for c in cold} == {common_pb2.ROUTING_REASON_RANDOM_QA}
