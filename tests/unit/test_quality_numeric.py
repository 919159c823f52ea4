"""Agreement, aggregation and gold bounds against independent reference implementations."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene, MajorityVote
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint
from strata.quality.aggregation import dawid_skene, majority_vote
from strata.quality.agreement import (
    AgreementError,
    cohen_kappa,
    counts_from_votes,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_counts,
    mean_pairwise_cohen,
    pairwise_cohen_from_votes,
)
from strata.quality.gold import gold_verdict, wilson_interval

SEEDS = range(25)


@pytest.mark.parametrize("seed", SEEDS)
def test_cohen_kappa_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, n = rng.integers(2, 8), rng.integers(5, 300)
    a = rng.integers(0, k, n)
    # Correlated second annotator, so kappa spans negative to near one.
    b = np.where(rng.random(n) < rng.random(), a, rng.integers(0, k, n))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-9)
    words = np.array(["cat", "dog", "bird", "fish", "ant", "bee", "cow", "elk"])
    assert cohen_kappa(words[a], words[b]) == pytest.approx(cohen_kappa_score(a, b), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, k, raters = rng.integers(5, 200), rng.integers(2, 10), rng.integers(2, 7)
    truth = rng.integers(0, k, n_items)
    votes = np.where(
        rng.random((n_items, raters)) < 0.6, truth[:, None], rng.integers(0, k, (n_items, raters))
    )
    counts = np.stack([(votes == c).sum(1) for c in range(k)], axis=1)
    assert fleiss_kappa(counts) == pytest.approx(sm_fleiss_kappa(counts), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_krippendorff_alpha_matches_the_krippendorff_package_with_missing_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_ann, n_items, k = rng.integers(2, 12), rng.integers(5, 150), rng.integers(2, 8)
    truth = rng.integers(0, k, n_items)
    m = np.where(
        rng.random((n_ann, n_items)) < 0.7, truth, rng.integers(0, k, (n_ann, n_items))
    ).astype(float)
    m[rng.random(m.shape) < rng.uniform(0, 0.6)] = np.nan
    m[0, :2] = [0, 1]  # at least two distinct values, which the reference requires
    expected = krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
    assert krippendorff_alpha(m) == pytest.approx(expected, abs=1e-6)


def test_degenerate_agreement_inputs_give_clear_errors() -> None:
    with pytest.raises(AgreementError, match="all missing"):
        krippendorff_alpha(np.full((3, 4), np.nan))
    with pytest.raises(AgreementError, match="two or more values"):
        krippendorff_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]]))
    with pytest.raises(AgreementError, match="at least two ratings"):
        fleiss_kappa([[1, 0], [2, 0]])
    with pytest.raises(AgreementError, match="same length"):
        cohen_kappa([1, 2], [1])
    # Everyone agrees on one class: full agreement, not a division by zero.
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
    assert krippendorff_alpha(np.ones((3, 4))) == 1.0


def test_mean_pairwise_cohen_uses_shared_items_only() -> None:
    m = np.array([[0, 1, 2, np.nan], [0, 1, 2, 2], [np.nan, 1, 0, 2]], dtype=float)
    pairs = [
        cohen_kappa([0, 1, 2], [0, 1, 2]),
        cohen_kappa([1, 2], [1, 0]),
        cohen_kappa([1, 2, 2], [1, 0, 2]),
    ]
    assert mean_pairwise_cohen(m) == pytest.approx(np.mean(pairs))


# -- aggregation -----------------------------------------------------------------


def simulated_crowd(seed: int, n_items: int = 1500, k: int = 5):  # type: ignore[no-untyped-def]
    """Votes from a crowd with known skills: experts, decent, noisy, spammers, an adversary."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    skills = [0.92] * 4 + [0.75] * 8 + [0.55] * 6 + ["spam"] * 3 + ["adversary"]
    rows = []
    for i in range(n_items):
        for j in rng.choice(len(skills), 5, replace=False):
            s = skills[j]
            if s == "spam":
                y = rng.integers(0, k)
            elif s == "adversary":
                y = (truth[i] + 1) % k
            else:
                y = truth[i] if rng.random() < s else rng.integers(0, k)
            rows.append((i, j, y))
    votes = np.array(rows)
    return truth, votes, k


def test_majority_vote_matches_crowd_kit_where_there_is_no_tie() -> None:
    _truth, votes, k = simulated_crowd(1)
    winners, share = majority_vote(votes[:, 0], votes[:, 2], k)
    df = pd.DataFrame({"task": votes[:, 0], "worker": votes[:, 1], "label": votes[:, 2]})
    probas = MajorityVote().fit(df).probas_.reindex(columns=range(k)).fillna(0).sort_index()
    p = probas.to_numpy()
    top2 = np.sort(p, 1)[:, -2:]
    clear = top2[:, 1] > top2[:, 0]
    assert clear.mean() > 0.5
    assert (winners[clear] == p[clear].argmax(1)).all()
    assert share == pytest.approx(p.max(1), abs=1e-12)


@pytest.mark.parametrize("iterations", [1, 7, 40])
def test_dawid_skene_without_priors_is_crowd_kits_algorithm(iterations: int) -> None:
    _, votes, k = simulated_crowd(2, n_items=600)
    df = pd.DataFrame({"task": votes[:, 0], "worker": votes[:, 1], "label": votes[:, 2]})
    ref = DawidSkene(n_iter=iterations, tol=0).fit(df)
    expected = ref.probas_.reindex(columns=range(k)).fillna(0).sort_index().to_numpy()
    ours = dawid_skene(
        votes[:, 0], votes[:, 1], votes[:, 2], k, prior_strength=0, max_iter=iterations, tol=0
    )
    assert ours.iterations == iterations
    assert np.abs(ours.posteriors - expected).max() < 1e-6


def long_tail_crowd(seed: int, n_items: int = 1500, k: int = 5, n_ann: int = 80):  # type: ignore[no-untyped-def]
    """A crowd as it really is: a few annotators do most of the work, many do a little."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n_items)
    skill = rng.choice([0.92, 0.75, 0.55, -1, -2], n_ann, p=[0.2, 0.4, 0.25, 0.1, 0.05])
    volume = 1.0 / np.arange(1, n_ann + 1) ** 1.1
    volume /= volume.sum()
    rows = []
    for i in range(n_items):
        for j in rng.choice(n_ann, 3, replace=False, p=volume):
            if skill[j] == -1:  # spammer
                y = rng.integers(0, k)
            elif skill[j] == -2:  # adversary
                y = (truth[i] + 1) % k
            else:
                y = truth[i] if rng.random() < skill[j] else rng.integers(0, k)
            rows.append((i, j, y))
    return truth, np.array(rows), k


def _accuracies(truth, votes, k):  # type: ignore[no-untyped-def]
    mv, _ = majority_vote(votes[:, 0], votes[:, 2], k)
    ds = dawid_skene(votes[:, 0], votes[:, 1], votes[:, 2], k)
    df = pd.DataFrame({"task": votes[:, 0], "worker": votes[:, 1], "label": votes[:, 2]})
    ck = DawidSkene(n_iter=100).fit(df).probas_.reindex(columns=range(k)).fillna(0).sort_index()
    return (
        (mv == truth).mean(),
        (ds.posteriors.argmax(1) == truth).mean(),
        (ck.to_numpy().argmax(1) == truth).mean(),
        ds,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dawid_skene_beats_majority_vote_and_crowd_kit_on_a_long_tail_crowd(seed: int) -> None:
    acc_mv, acc_ds, acc_ck, ds = _accuracies(*long_tail_crowd(seed))
    assert acc_ds > acc_mv and acc_ds >= acc_ck, (acc_ds, acc_mv, acc_ck)
    assert ds.converged
    np.testing.assert_allclose(ds.posteriors.sum(1), 1.0)


def test_dawid_skene_finds_spammers_and_the_adversary_on_a_dense_crowd() -> None:
    truth, votes, k = simulated_crowd(3)
    acc_mv, acc_ds, acc_ck, ds = _accuracies(truth, votes, k)
    # Every annotator has hundreds of labels: the prior barely matters, both EMs agree.
    assert acc_ds > acc_mv + 0.03 and abs(acc_ds - acc_ck) < 0.005
    diag = np.einsum("jkk->jk", ds.confusions).mean(1)
    assert diag[21] < 0.1  # the adversary
    assert (diag[18:21] < 0.35).all() and (diag[:4] > 0.85).all()  # spammers, experts


def test_dawid_skene_priors_keep_a_newcomer_plausible() -> None:
    # Annotator 3 gave one label, against two reliable annotators.
    item = np.array([0, 0, 0, 1, 1, 2, 2])
    ann = np.array([0, 1, 3, 0, 1, 0, 1])
    lab = np.array([1, 1, 0, 0, 0, 1, 1])
    ds = dawid_skene(item, ann, lab, 2)
    assert 0.3 < ds.confusions[3, 0, 0] < 0.9  # neither perfect nor useless
    assert ds.posteriors[0].argmax() == 1


def test_gold_items_anchor_dawid_skene_against_a_colluding_majority() -> None:
    # Three annotators who swap classes 0 and 1 on purpose outvote one honest annotator.
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 2, 200)
    item = np.repeat(np.arange(200), 4)
    ann = np.tile(np.arange(4), 200)
    lab = np.where(ann == 0, truth[item], 1 - truth[item])
    loose = dawid_skene(item, ann, lab, 2)
    assert (loose.posteriors.argmax(1) == truth).mean() < 0.05  # the colluders win
    gold = np.arange(30)  # the first 30 items are gold
    anchored = dawid_skene(item, ann, lab, 2, known_items=gold, known_classes=truth[gold])
    assert (anchored.posteriors.argmax(1) == truth).all()
    assert np.allclose(anchored.posteriors[gold].max(1), 1.0)
    assert anchored.confusions[1, 0, 1] > 0.9  # a colluder is known to answer 1 for 0
    with pytest.raises(ValueError, match="known items"):
        dawid_skene(item, ann, lab, 2, known_items=[500], known_classes=[0])


def test_dawid_skene_class_priors_rule_no_class_out_early() -> None:
    # Four items, all voted class 0: class 2 keeps some prior mass.
    ds = dawid_skene([0, 1, 2, 3], [0, 0, 1, 1], [0, 0, 0, 0], 3)
    assert ds.class_priors[2] > 0.1
    classical = dawid_skene([0, 1, 2, 3], [0, 0, 1, 1], [0, 0, 0, 0], 3, prior_strength=0)
    assert classical.class_priors[2] < 1e-6


def test_aggregation_rejects_labels_outside_the_classes() -> None:
    with pytest.raises(ValueError, match="class indices"):
        majority_vote([0, 1], [0, 5], 3)
    with pytest.raises(ValueError, match="one entry per vote"):
        dawid_skene([0, 1], [0], [0, 1], 2)


def test_counts_from_votes() -> None:
    counts = counts_from_votes([0, 0, 1, 2, 2, 2], [1, 1, 0, 2, 2, 0], 3, 3)
    assert counts.tolist() == [[0, 2, 0], [1, 0, 0], [1, 0, 2]]


# -- gold ---------------------------------------------------------------------------


@pytest.mark.parametrize(("correct", "answered"), [(0, 1), (3, 5), (9, 10), (40, 50), (7, 7)])
def test_wilson_interval_matches_statsmodels(correct: int, answered: int) -> None:
    lo, hi = proportion_confint(correct, answered, alpha=0.05, method="wilson")
    assert wilson_interval(correct, answered) == pytest.approx((lo, hi), abs=1e-9)


def test_gold_verdict_blocks_only_when_surely_below() -> None:
    assert gold_verdict(1, 3, 0.8).status == "active"  # too few to judge
    assert gold_verdict(4, 10, 0.8).status == "blocked"  # upper bound 0.69 < 0.8
    assert gold_verdict(7, 10, 0.8).status == "retrain"  # 0.7 but interval reaches 0.89
    assert gold_verdict(9, 10, 0.8).status == "active"
    verdict = gold_verdict(4, 10, 0.8)
    assert "0.40 on 10 items" in verdict.reason and verdict.upper < 0.8


def test_rubber_stamping_wrong_prelabels_blocks_like_a_spammer() -> None:
    from strata.quality.gold import Anchoring

    # Good on gold overall (they copied right pre-labels), but 6 of 6 wrong ones followed.
    copycat = gold_verdict(16, 20, 0.7, 5, Anchoring(6, 6), max_anchoring=0.5)
    assert copycat.status == "blocked" and "anchoring" in copycat.reason
    # A careful annotator who shares one mistake with the model is fine.
    careful = gold_verdict(18, 20, 0.7, 5, Anchoring(1, 6), max_anchoring=0.5)
    assert careful.status == "active"
    # Too few wrong pre-labels to judge, or the rule turned off: gold accuracy decides.
    assert gold_verdict(16, 20, 0.7, 5, Anchoring(3, 3), 0.5).status == "active"
    assert gold_verdict(16, 20, 0.7, 5, Anchoring(6, 6), 0.0).status == "active"
    assert Anchoring(0, 0).rate is None and Anchoring(3, 4).rate == 0.75


@pytest.mark.parametrize("seed", range(10))
def test_agreement_from_flat_votes_matches_the_references(seed: int) -> None:
    """The report's sparse paths (no dense matrix) agree with krippendorff and scikit-learn."""
    rng = np.random.default_rng(100 + seed)
    n_ann, n_items, k = rng.integers(3, 10), rng.integers(20, 120), rng.integers(2, 6)
    truth = rng.integers(0, k, n_items)
    m = np.where(
        rng.random((n_ann, n_items)) < 0.7, truth, rng.integers(0, k, (n_ann, n_items))
    ).astype(float)
    m[rng.random(m.shape) < 0.5] = np.nan
    m[0, :2] = [0, 1]
    annotator, item = np.nonzero(~np.isnan(m))
    labels = m[annotator, item].astype(int)
    counts = counts_from_votes(item, labels, n_items, k)
    expected = krippendorff.alpha(reliability_data=m, level_of_measurement="nominal")
    assert krippendorff_alpha_counts(counts) == pytest.approx(expected, abs=1e-6)
    kappas = []
    for i in range(n_ann):
        for j in range(i + 1, n_ann):
            both = ~np.isnan(m[i]) & ~np.isnan(m[j])
            if both.sum() >= 2:
                x, y = m[i, both], m[j, both]
                if len(np.unique(np.concatenate([x, y]))) > 1:
                    kappas.append(cohen_kappa_score(x, y))
                else:
                    kappas.append(1.0)
    got = pairwise_cohen_from_votes(item, annotator, labels, k)
    assert got == pytest.approx(np.mean(kappas), abs=1e-9)
