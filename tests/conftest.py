"""Checks that hold for every tier."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under `--dist loadgroup`, fail a grouped test that pytest-xdist could not group.

    xdist groups a test by appending `@group` to its node id. pytest 9.2 stopped that taking
    effect, so the groups silently fell apart: the Ray tests ran two at a time, and one timed
    out starting Ray. A test that should have taken its turn fails here, saying why, instead.
    """
    if not getattr(item.config.option, "loadgroup", False):
        return
    if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
        pytest.fail(
            f"pytest-xdist could not put this test in its xdist_group: pytest "
            f"{pytest.__version__} does not keep the group xdist adds to the node id, so "
            "--dist loadgroup runs the group's tests side by side. Install the pytest that "
            "the `dev` extra pins: pip install -e '.[dev]'",
            pytrace=False,
        )
