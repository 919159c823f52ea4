"""What gold tasks' pre-labels imitate: the pre-labels recent pool tasks showed."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from strata.common.db import Database
from strata.gateway import store
from strata.gateway.policy import ShownProfile


class PoolProfiles:
    """Per project, the pre-labels its newest `window` pool tasks showed (refreshed every
    `refresh_s`, sooner while the window is not full). Every NextTask draws one, whatever
    kind of task it then serves, so a gold task costs no more time than a pool task."""

    def __init__(
        self,
        db: Database,
        rng: random.Random,
        *,
        window: int = 100,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.rng = rng
        self.window = window
        self.refresh_s = refresh_s
        self.clock = clock
        self._cache: dict[str, tuple[float, list[ShownProfile]]] = {}
        self._lock = threading.Lock()

    # Until a project's window is full, its profiles are read again sooner: a small early
    # sample would otherwise stand for the pool for a whole refresh period.
    SOON_S = 0.2

    def draw(self, project: str) -> ShownProfile | None:
        """One recent pool task's shown pre-label, at random; None before any pool task."""
        now = self.clock()
        with self._lock:
            hit = self._cache.get(project)
        stale_after = self.refresh_s if hit and len(hit[1]) >= self.window else self.SOON_S
        # No pool task seen yet: ask again each time rather than serve gold bare meanwhile.
        if hit is None or not hit[1] or now - hit[0] > stale_after:
            with self.db.transaction() as conn:
                profiles = store.recent_profiles(conn, project, self.window)
            hit = (now, profiles)
            with self._lock:
                self._cache[project] = hit
        profiles = hit[1]
        if not profiles:
            return None
        with self._lock:
            return profiles[self.rng.randrange(len(profiles))]
