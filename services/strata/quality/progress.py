"""The time grid of a project's progress chart: bucket length, first bucket, bucket count."""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_BUCKET_S = 3600
MAX_BUCKETS = 500


@dataclass(frozen=True)
class Grid:
    bucket_s: int
    # Bucket n covers [first_slot + n, first_slot + n + 1) * bucket_s, epoch seconds.
    first_slot: int
    buckets: int

    @property
    def start_s(self) -> int:
        return self.first_slot * self.bucket_s

    def index(self, slot: int) -> int:
        """The bucket of an epoch slot (floor(t / bucket_s)), clamped into the grid."""
        return min(max(slot - self.first_slot, 0), self.buckets - 1)


def progress_grid(
    first_s: float, last_s: float, bucket_s: int = 0, max_buckets: int = MAX_BUCKETS
) -> Grid:
    """Buckets aligned to multiples of `bucket_s` (0: an hour) from `first_s` to `last_s`;
    the length doubles until at most `max_buckets` cover the span."""
    if bucket_s < 0:
        raise ValueError("bucket_s cannot be negative")
    size = bucket_s or DEFAULT_BUCKET_S
    last_s = max(last_s, first_s)
    while True:
        first_slot = math.floor(first_s / size)
        count = math.floor(last_s / size) - first_slot + 1
        if count <= max_buckets:
            return Grid(size, first_slot, count)
        size *= 2
