"""Fixtures of the browser tier: one stack per module, a Chromium per test.

Per module, not per session: a stack's training service runs a local Ray, and one left
up for the rest of a run starves the Ray tests that follow on the same worker (the fast
demo once trained its first model only at its end, so no pre-label reached the copycat).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .support import Stack, launch_browser, need_chromium, run_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    need_chromium()
    yield from run_stack(tmp_path_factory.mktemp("browser"))


@pytest.fixture
def browser(tmp_path: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch_browser(playwright, tmp_path / "chromium-profile")
        try:
            yield context
        finally:
            context.close()
