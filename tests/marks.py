"""Marks shared by the test tiers."""

from __future__ import annotations

import pytest

# `make test` runs two xdist workers (`--dist loadgroup`). Tests that start a local Ray
# instance carry this mark, so one worker takes them in turn: two Ray instances at once on
# a 2-core machine starve each other's workers.
ONE_RAY_AT_A_TIME = pytest.mark.xdist_group("ray")
