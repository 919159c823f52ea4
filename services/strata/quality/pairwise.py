"""Agreement between every two annotators (the console's heatmap), from flat votes.

Pure functions on arrays: one vote per (item, annotator), labels as class codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class PairAgreement:
    """Two annotators (indices into the caller's annotator list, a < b) on shared items."""

    a: int
    b: int
    shared_items: int
    agreed: int
    cohen_kappa: float


def kappa_from_counts(
    shared: ArrayLike, agreed: ArrayLike, marginal_a: ArrayLike, marginal_b: ArrayLike
) -> NDArray[np.float64]:
    """Cohen's kappa per pair from its counts: shared items, agreements, and each side's
    labels per class ([pairs, classes]). NaN under 2 shared items or when chance
    agreement is total (both gave one and the same class every time)."""
    n = np.asarray(shared, dtype=np.int64)
    # Integer counts: chance agreement is total exactly when sum(ra * rb) == n^2.
    ra = np.asarray(marginal_a, dtype=np.int64)
    rb = np.asarray(marginal_b, dtype=np.int64)
    chance = (ra * rb).sum(axis=1)
    undefined = (n < 2) | (chance == n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_o = np.asarray(agreed, dtype=float) / n
        p_e = chance / (n.astype(float) ** 2)
        kappa = (p_o - p_e) / (1.0 - p_e)
    return np.where(undefined, np.nan, kappa)


def pair_agreements(
    item_idx: ArrayLike, annotator_idx: ArrayLike, labels: ArrayLike, n_classes: int
) -> list[PairAgreement]:
    """Shared items, agreements and Cohen's kappa for every pair of annotators that
    labelled an item in common, ordered by (a, b).

    Votes must be one per (item, annotator). Each item contributes one vote pair per two
    of its annotators, so the work grows with the votes, not annotators x items.
    """
    i = np.asarray(item_idx, dtype=np.int64)
    j = np.asarray(annotator_idx, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    if i.size == 0:
        return []
    order = np.lexsort((j, i))
    i, j, y = i[order], j[order], y[order]
    if np.any((i[1:] == i[:-1]) & (j[1:] == j[:-1])):
        raise ValueError("one vote per (item, annotator) is expected")
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    sizes = np.diff(np.r_[starts, i.size])
    first: list[NDArray[np.int64]] = []
    second: list[NDArray[np.int64]] = []
    for size in np.unique(sizes[sizes >= 2]):
        base = starts[sizes == size]
        for p in range(size):
            for q in range(p + 1, size):
                # Sorted by annotator within an item: the first of a pair has the lower index.
                first.append(base + p)
                second.append(base + q)
    if not first:
        return []
    x, z = np.concatenate(first), np.concatenate(second)
    n_annotators = int(j.max()) + 1
    pair_codes, pair = np.unique(j[x] * n_annotators + j[z], return_inverse=True)
    n_pairs, k = pair_codes.size, n_classes
    shared = np.bincount(pair, minlength=n_pairs)
    agreed = np.bincount(pair[y[x] == y[z]], minlength=n_pairs)
    marginal_a = np.bincount(pair * k + y[x], minlength=n_pairs * k).reshape(n_pairs, k)
    marginal_b = np.bincount(pair * k + y[z], minlength=n_pairs * k).reshape(n_pairs, k)
    kappa = kappa_from_counts(shared, agreed, marginal_a, marginal_b)
    return [
        PairAgreement(
            int(code // n_annotators),
            int(code % n_annotators),
            int(shared[n]),
            int(agreed[n]),
            float(kappa[n]),
        )
        for n, code in enumerate(pair_codes)
    ]


def code_labels(values: list[str], classes: list[str]) -> tuple[NDArray[np.int64], int]:
    """Class codes for `values` in `classes` order; values outside the classes (an older
    ontology version's) get codes after them. Returns the codes and the number of codes."""
    index = {c: n for n, c in enumerate(classes)}
    codes = np.empty(len(values), dtype=np.int64)
    for n, v in enumerate(values):
        codes[n] = index.setdefault(v, len(index))
    return codes, max(len(index), 1)
