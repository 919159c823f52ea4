"""How often pool pre-labels turn out right, per project: what gold pre-labels match."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from strata.common.db import Database
from strata.gateway import store
from strata.gateway.policy import ShownProfile


class PoolAgreement:
    """Per project, the pre-labels of its newest `window` decided pool tasks, each with
    whether it matched the decision (refreshed every `refresh_s`). Every NextTask reads
    it, whatever kind of task it then serves, so a gold task costs no more time."""

    def __init__(
        self,
        db: Database,
        *,
        window: int = 500,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.window = window
        self.refresh_s = refresh_s
        self.clock = clock
        self._cache: dict[str, tuple[float, list[ShownProfile]]] = {}
        self._lock = threading.Lock()

    def profiles(self, project: str) -> list[ShownProfile]:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(project)
        if hit is None or now - hit[0] > self.refresh_s:
            with self.db.transaction() as conn:
                hit = (now, store.decided_profiles(conn, project, self.window))
            with self._lock:
                self._cache[project] = hit
        return hit[1]
