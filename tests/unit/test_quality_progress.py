"""The progress chart's time grid."""

from __future__ import annotations

import pytest
from strata.quality.progress import MAX_BUCKETS, progress_grid


def test_buckets_are_aligned_and_cover_first_to_last() -> None:
    grid = progress_grid(7_250.0, 14_399.0, 3600)
    assert (grid.bucket_s, grid.start_s, grid.buckets) == (3600, 7200, 2)
    assert grid.index(7_250 // 3600) == 0 and grid.index(14_399 // 3600) == 1
    # Outside the grid: clamped to its ends.
    assert grid.index(0) == 0 and grid.index(10**9) == 1


def test_default_bucket_is_an_hour_and_one_instant_is_one_bucket() -> None:
    grid = progress_grid(1_000.0, 1_000.0)
    assert (grid.bucket_s, grid.buckets, grid.start_s) == (3600, 1, 0)


def test_the_bucket_doubles_until_the_span_fits() -> None:
    day = 86_400
    grid = progress_grid(0.0, 30 * day - 1, 60)  # 43,200 one-minute buckets
    assert grid.bucket_s == 60 * 2**7 and grid.buckets <= MAX_BUCKETS
    assert (30 * day - 1) // (grid.bucket_s // 2) + 1 > MAX_BUCKETS  # the smallest that fits
    assert grid.start_s <= 0 < grid.start_s + grid.bucket_s
    assert grid.start_s + grid.buckets * grid.bucket_s > 30 * day - 1


def test_a_negative_bucket_is_refused() -> None:
    with pytest.raises(ValueError):
        progress_grid(0.0, 1.0, -1)
