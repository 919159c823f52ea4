"""Postgres: a connection pool bound to the service's schema, and migrations."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

_SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """Migrations are malformed or were changed after being applied."""


def check_schema_name(schema: str) -> str:
    """A schema name safe to use as an identifier."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lower-case letters, digits and _")
    return schema


class Database:
    """A psycopg pool whose connections use `schema` first on the search path."""

    def __init__(self, dsn: str, schema: str, *, min_size: int = 1, max_size: int = 8) -> None:
        self.dsn = dsn
        self.schema = check_schema_name(schema)
        self._connect_kwargs = {
            "options": f"-c search_path={self.schema},public",
            "connect_timeout": 5,
        }
        self.pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs=self._connect_kwargs,
            check=ConnectionPool.check_connection,
            name=f"strata-{schema}",
            reconnect_timeout=0,
        )

    def open(self, wait_s: float = 30.0) -> None:
        """Open the pool, waiting for Postgres up to `wait_s` seconds."""
        self.pool.open(wait=True, timeout=wait_s)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self, timeout: float = 10.0) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction: committed on exit, rolled back on error."""
        with self.pool.connection(timeout=timeout) as conn, conn.transaction():
            yield conn

    def dedicated(self) -> DedicatedConnection:
        """A connection of its own for one hot loop (no pool check per use)."""
        return DedicatedConnection(self.dsn, self._connect_kwargs)

    def ping(self, timeout: float = 2.0) -> bool:
        """True when Postgres answers a query within `timeout` seconds."""
        try:
            with self.pool.connection(timeout=timeout) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception as exc:  # any failure means "not reachable now"
            log.debug("postgres ping failed: %s", exc)
            return False


class DedicatedConnection:
    """One long-lived connection, reopened after it breaks. For a single thread."""

    def __init__(self, dsn: str, kwargs: dict[str, Any]) -> None:
        self.dsn = dsn
        self.kwargs = kwargs
        self._conn: psycopg.Connection[Any] | None = None

    def get(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(self.dsn, **self.kwargs)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of one component (the kit, or a service)."""

    component: str
    version: int
    name: str
    sql_text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql_text.encode()).hexdigest()


def package_migrations(package: str) -> Traversable:
    """The `migrations` folder of an installed package."""
    return resources.files(package).joinpath("migrations")


def load_migrations(component: str, folder: Traversable | Path) -> list[Migration]:
    """The `NNNN_name.sql` files of `folder`, in order; gaps and odd names are errors."""
    found = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_FILE.match(entry.name)
        if not match:
            raise MigrationError(f"{component}: migration file {entry.name!r} is not NNNN_name.sql")
        found.append(Migration(component, int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"{component}: migrations must be numbered 0001, 0002, ... without gaps; "
                f"found {migration.version:04d} where {expected:04d} was expected"
            )
    return found


KIT_COMPONENT = "kit"


def kit_migrations() -> list[Migration]:
    """The inbox and outbox tables every service schema has."""
    return load_migrations(KIT_COMPONENT, package_migrations("strata.common"))


def migrate(dsn: str, schema: str, migrations: list[Migration]) -> list[Migration]:
    """Apply what is not applied yet to `schema`; returns what it applied.

    Idempotent and safe to run from several replicas at once: an advisory lock
    serialises them, and a changed file that was already applied is an error.
    """
    check_schema_name(schema)
    applied_now: list[Migration] = []
    with psycopg.connect(dsn, autocommit=False, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"strata-migrate-{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {}.schema_migrations (
                        component text NOT NULL,
                        version integer NOT NULL,
                        name text NOT NULL,
                        checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (component, version))"""
            ).format(sql.Identifier(schema))
        )
        rows = conn.execute(
            sql.SQL("SELECT component, version, checksum FROM {}.schema_migrations").format(
                sql.Identifier(schema)
            )
        ).fetchall()
        done = {(c, v): s for c, v, s in rows}
        conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema)))
        for m in migrations:
            recorded = done.get((m.component, m.version))
            if recorded is not None:
                if recorded != m.checksum:
                    raise MigrationError(
                        f"{schema}: {m.component} migration {m.version:04d}_{m.name} was "
                        "changed after it was applied; add a new migration instead"
                    )
                continue
            log.info("applying %s migration %04d_%s to %s", m.component, m.version, m.name, schema)
            conn.execute(m.sql_text.encode())
            conn.execute(
                "INSERT INTO schema_migrations (component, version, name, checksum) "
                "VALUES (%s, %s, %s, %s)",
                (m.component, m.version, m.name, m.checksum),
            )
            applied_now.append(m)
    return applied_now
