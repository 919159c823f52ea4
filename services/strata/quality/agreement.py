"""Inter-annotator agreement: Cohen's kappa, Fleiss' kappa, Krippendorff's alpha (nominal).

Pure functions on arrays. Labels are class indices (or any hashable codes for
Cohen's kappa); missing values in Krippendorff's matrix are NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


class AgreementError(ValueError):
    """The input cannot give an agreement figure (too little data, wrong shape)."""


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Cohen's kappa between two annotators' labels on the same items.

    When chance agreement is total (both gave one and the same class to every
    item) kappa is undefined; this returns 1.0 then, since they agree fully.
    """
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape or x.ndim != 1:
        raise AgreementError(
            f"need two label vectors of the same length, got {x.shape} and {y.shape}"
        )
    if x.size == 0:
        raise AgreementError("no items labeled by both annotators")
    classes, codes = np.unique(np.concatenate([x, y]), return_inverse=True)
    k = len(classes)
    cx, cy = codes[: x.size], codes[x.size :]
    confusion = np.bincount(cx * k + cy, minlength=k * k).reshape(k, k).astype(float)
    n = confusion.sum()
    p_o = np.trace(confusion) / n
    p_e = float(confusion.sum(1) @ confusion.sum(0)) / (n * n)
    if np.isclose(p_e, 1.0):
        return 1.0 if np.isclose(p_o, 1.0) else 0.0
    return float((p_o - p_e) / (1.0 - p_e))


def fleiss_kappa(counts: ArrayLike) -> float:
    """Fleiss' kappa from counts[n_items, n_classes] (raters per item per class).

    Items may have different numbers of raters (each needs at least two); with
    a constant number it is the textbook formula.
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[0] == 0:
        raise AgreementError(f"counts must be [n_items, n_classes], got shape {c.shape}")
    if (c < 0).any():
        raise AgreementError("counts cannot be negative")
    raters = c.sum(1)
    if (raters < 2).any():
        raise AgreementError("every item needs at least two ratings for Fleiss' kappa")
    p_item = ((c * c).sum(1) - raters) / (raters * (raters - 1))
    p_bar = p_item.mean()
    p_class = c.sum(0) / raters.sum()
    p_e = float((p_class**2).sum())
    if np.isclose(p_e, 1.0):
        return 1.0 if np.isclose(p_bar, 1.0) else 0.0
    return float((p_bar - p_e) / (1.0 - p_e))


def coincidences(matrix: ArrayLike) -> NDArray[np.float64]:
    """Krippendorff's coincidence matrix of a [n_annotators, n_items] nominal matrix."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise AgreementError(f"matrix must be [n_annotators, n_items], got shape {m.shape}")
    present = ~np.isnan(m)
    values = np.unique(m[present])
    if values.size == 0:
        raise AgreementError("the matrix has no values (all missing)")
    k = values.size
    # counts[item, value]: how many annotators gave `value` to `item`.
    item_idx = np.nonzero(present)[1]
    value_idx = np.searchsorted(values, m[present])
    counts = np.bincount(item_idx * k + value_idx, minlength=m.shape[1] * k).reshape(-1, k)
    return coincidences_from_counts(counts)


def coincidences_from_counts(counts: ArrayLike) -> NDArray[np.float64]:
    """The coincidence matrix from counts[n_items, n_values] (values given per item)."""
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2:
        raise AgreementError(f"counts must be [n_items, n_values], got shape {c.shape}")
    pairable = c.sum(1)
    c, pairable = c[pairable >= 2], pairable[pairable >= 2]
    if c.shape[0] == 0:
        raise AgreementError("no item has two or more values: agreement is undefined")
    weights = 1.0 / (pairable - 1)
    o = (c * weights[:, None]).T @ c
    o -= np.diag((c * weights[:, None]).sum(0))
    return o


def krippendorff_alpha(matrix: ArrayLike) -> float:
    """Krippendorff's alpha for nominal data; NaN marks a missing value."""
    return alpha_from_coincidences(coincidences(matrix))


def krippendorff_alpha_counts(counts: ArrayLike) -> float:
    """Krippendorff's alpha (nominal) from counts[n_items, n_classes]: no matrix needed."""
    return alpha_from_coincidences(coincidences_from_counts(counts))


def alpha_from_coincidences(o: NDArray[np.float64]) -> float:
    """Alpha = 1 - observed / expected disagreement, from a coincidence matrix."""
    n_c = o.sum(1)
    n = n_c.sum()
    observed = o.sum() - np.trace(o)
    expected = (n_c.sum() ** 2 - (n_c**2).sum()) / (n - 1)
    if np.isclose(expected, 0.0):
        # One value only: no disagreement is possible.
        return 1.0
    return float(1.0 - observed / expected)


def mean_pairwise_cohen(matrix: ArrayLike, min_shared: int = 2) -> float:
    """Mean Cohen's kappa over annotator pairs sharing at least `min_shared` items."""
    m = np.asarray(matrix, dtype=float)
    kappas: list[float] = []
    for i in range(m.shape[0]):
        for j in range(i + 1, m.shape[0]):
            both = ~np.isnan(m[i]) & ~np.isnan(m[j])
            if both.sum() >= min_shared:
                kappas.append(cohen_kappa(m[i, both], m[j, both]))
    if not kappas:
        raise AgreementError(f"no pair of annotators shares {min_shared} items")
    return float(np.mean(kappas))


def counts_from_votes(
    item_idx: ArrayLike, labels: ArrayLike, n_items: int, n_classes: int
) -> NDArray[np.int64]:
    """counts[n_items, n_classes] from flat (item, label) votes."""
    i, y = np.asarray(item_idx), np.asarray(labels)
    return np.bincount(i * n_classes + y, minlength=n_items * n_classes).reshape(n_items, n_classes)


def pairwise_cohen_from_votes(
    item_idx: ArrayLike,
    annotator_idx: ArrayLike,
    labels: ArrayLike,
    n_classes: int,
    min_shared: int = 2,
) -> float:
    """Mean Cohen's kappa over annotator pairs, from flat votes (no dense matrix).

    Each pair of votes on one item adds to that annotator pair's confusion table;
    pairs sharing fewer than `min_shared` items are left out.
    """
    i = np.asarray(item_idx, dtype=np.int64)
    j = np.asarray(annotator_idx, dtype=np.int64)
    y = np.asarray(labels, dtype=np.int64)
    order = np.lexsort((j, i))
    i, j, y = i[order], j[order], y[order]
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    sizes = np.diff(np.r_[starts, i.size])
    a1: list[NDArray[np.int64]] = []
    a2: list[NDArray[np.int64]] = []
    l1: list[NDArray[np.int64]] = []
    l2: list[NDArray[np.int64]] = []
    for size in np.unique(sizes[sizes >= 2]):
        base = starts[sizes == size]
        for p in range(size):
            for q in range(p + 1, size):
                a1.append(j[base + p])
                a2.append(j[base + q])
                l1.append(y[base + p])
                l2.append(y[base + q])
    if not a1:
        raise AgreementError("no item has votes from two annotators")
    first, second = np.concatenate(a1), np.concatenate(a2)
    given1, given2 = np.concatenate(l1), np.concatenate(l2)
    n_j = int(max(first.max(), second.max())) + 1
    pair_codes, pair = np.unique(first * n_j + second, return_inverse=True)
    k = n_classes
    tables = np.bincount(
        pair * k * k + given1 * k + given2, minlength=pair_codes.size * k * k
    ).reshape(-1, k, k)
    n = tables.sum((1, 2)).astype(float)
    keep = n >= min_shared
    if not keep.any():
        raise AgreementError(f"no pair of annotators shares {min_shared} items")
    tables, n = tables[keep], n[keep]
    p_o = np.trace(tables, axis1=1, axis2=2) / n
    p_e = (tables.sum(2) * tables.sum(1)).sum(1) / (n * n)
    full = np.isclose(p_e, 1.0)
    kappa = np.where(
        full, np.where(np.isclose(p_o, 1.0), 1.0, 0.0), (p_o - p_e) / np.where(full, 1, 1 - p_e)
    )
    return float(kappa.mean())
