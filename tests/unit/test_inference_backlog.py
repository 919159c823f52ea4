"""How often inference counts its scoring backlog."""

from strata.inference.pool import BACKLOG_EVERY_S, backlog_interval


def test_a_cheap_count_repeats_every_two_seconds() -> None:
    assert backlog_interval(0.0) == BACKLOG_EVERY_S
    assert backlog_interval(0.15) == BACKLOG_EVERY_S


def test_a_slow_count_takes_at_most_a_tenth_of_the_time() -> None:
    for took in (0.3, 1.5, 4.0):
        interval = backlog_interval(took)
        assert interval > BACKLOG_EVERY_S
        assert took / interval <= 0.1 + 1e-9
