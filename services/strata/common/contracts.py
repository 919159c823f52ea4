"""Contract look-ups with caching: versions are immutable, "current" is refreshed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from strata.common.db import Database
from strata.v1 import common_pb2

# (conn, project, version or None for the latest) -> the contract, or None.
ContractLoader = Callable[
    [psycopg.Connection[Any], str, str | None], common_pb2.LabelingContract | None
]


class ContractCache:
    """Cached contract versions (forever: they never change) and current versions (TTL)."""

    def __init__(self, db: Database, load: ContractLoader, current_ttl_s: float = 1.0) -> None:
        self.db = db
        self.load = load
        self.current_ttl_s = current_ttl_s
        self._versions: dict[tuple[str, str], common_pb2.LabelingContract] = {}
        self._current: dict[str, tuple[float, common_pb2.LabelingContract | None]] = {}
        self._lock = threading.Lock()

    def version(self, project: str, version: str) -> common_pb2.LabelingContract | None:
        key = (project, version)
        with self._lock:
            found = self._versions.get(key)
        if found is not None:
            return found
        with self.db.transaction() as conn:
            found = self.load(conn, project, version)
        if found is not None:
            with self._lock:
                self._versions[key] = found
        return found

    def current(self, project: str) -> common_pb2.LabelingContract | None:
        now = time.monotonic()
        with self._lock:
            hit = self._current.get(project)
        if hit is not None and now - hit[0] <= self.current_ttl_s:
            return hit[1]
        with self.db.transaction() as conn:
            found = self.load(conn, project, None)
        with self._lock:
            self._current[project] = (now, found)
            if found is not None:
                self._versions[(project, found.version)] = found
        return found

    def invalidate(self, project: str) -> None:
        with self._lock:
            self._current.pop(project, None)
