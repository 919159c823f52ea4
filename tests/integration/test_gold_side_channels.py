"""Gold cannot be told apart from pool tasks, on the wire: a real gateway under a crowd.

The model is confident on gold items (they are a random sample, and with auto-accept on
confident pool items never reach people: only spot checks do), unsure on the pool items
active learning hands out. A gateway that showed gold's own predictions would give gold
away by its confident pre-labels; this one imitates the pool's. Over 600 tasks, gold and
pool tasks are compared at alpha = 0.01 on pre-label presence, confidence, id format,
lease length and time to serve; and the naive pre-labels are shown to be detectable by the
same test, so it can fail. Five tests at alpha = 0.01 would fail one run in twenty by
chance alone, so a property that differs is measured once more on a fresh project: the
test fails when a property differs in both (a real difference does; chance, 1 in 10,000).
`bench/gold_indistinguishability.py` runs the same measurement over several seeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from .conftest import Infra, service_config
from .gateway_support import (
    Gateway,
    ScriptedSampler,
    gateway_settings,
    scripted_sampler,
    start_gateway,
)
from .gold_support import ALPHA, measure


@pytest.fixture
def stack(infra: Infra) -> Iterator[tuple[Gateway, ScriptedSampler]]:
    with scripted_sampler() as (source, address):
        gw = start_gateway(
            service_config(infra, "gateway"),
            gateway_settings(address, refill_low_water=100, refill_batch=100),
        )
        try:
            yield gw, source
        finally:
            gw.channel.close()
            gw.runtime.stop(grace_s=1.0)


def test_gold_and_pool_tasks_are_indistinguishable(stack, infra: Infra) -> None:  # type: ignore[no-untyped-def]
    first = measure(*stack, infra.bootstrap, seed=11)
    print(json.dumps(first, indent=2, default=float))
    different = {name for name, p_value in first["p_values"].items() if p_value <= ALPHA}
    if different:
        again = measure(*stack, infra.bootstrap, seed=12)
        print(json.dumps(again, indent=2, default=float))
        different &= {name for name, p_value in again["p_values"].items() if p_value <= ALPHA}
    assert not different, f"gold differs from pool in {sorted(different)}"
