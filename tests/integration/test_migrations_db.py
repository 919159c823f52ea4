"""Migrations against the real Postgres: idempotent, concurrent-safe, tamper-evident."""

from __future__ import annotations

import threading

import psycopg
import pytest
from strata.common.db import Migration, MigrationError, kit_migrations, migrate

from .conftest import unique_service

SERVICE_MIGRATIONS = [
    Migration("svc", 1, "tasks", "CREATE TABLE tasks (task_id text PRIMARY KEY, state text);"),
    Migration("svc", 2, "tasks_index", "CREATE INDEX tasks_state ON tasks (state);"),
]


def _catalog(dsn: str, schema: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY 1, 2",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1", (schema,)
        ).fetchall()
        applied = conn.execute(
            "SELECT component, version, name, checksum, applied_at "
            f'FROM "{schema}".schema_migrations '
            "ORDER BY 1, 2"
        ).fetchall()
    return [columns, indexes, applied]


def test_migrations_applied_twice_change_nothing(infra) -> None:
    schema = unique_service("mig")
    wanted = [*kit_migrations(), *SERVICE_MIGRATIONS]
    first = migrate(infra.pg_dsn, schema, wanted)
    kit = [("kit", m.version) for m in kit_migrations()]
    assert len(kit) >= 2  # the outbox's bulk lane came second
    assert [(m.component, m.version) for m in first] == [*kit, ("svc", 1), ("svc", 2)]
    before = _catalog(infra.pg_dsn, schema)
    assert migrate(infra.pg_dsn, schema, wanted) == []
    assert _catalog(infra.pg_dsn, schema) == before


def test_replicas_migrating_at_once_apply_each_migration_once(infra) -> None:
    schema = unique_service("migc")
    errors: list[BaseException] = []
    applied: list[int] = []

    def run() -> None:
        try:
            applied.append(
                len(migrate(infra.pg_dsn, schema, [*kit_migrations(), *SERVICE_MIGRATIONS]))
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(applied) == [0, 0, 0, len(kit_migrations()) + len(SERVICE_MIGRATIONS)]


def test_a_migration_edited_after_it_ran_is_refused(infra) -> None:
    schema = unique_service("migt")
    migrate(infra.pg_dsn, schema, SERVICE_MIGRATIONS)
    edited = [
        SERVICE_MIGRATIONS[0],
        Migration("svc", 2, "tasks_index", "CREATE INDEX other ON tasks (task_id);"),
    ]
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(infra.pg_dsn, schema, edited)


def test_a_failing_migration_leaves_nothing_half_done(infra) -> None:
    schema = unique_service("migf")
    broken = [*SERVICE_MIGRATIONS, Migration("svc", 3, "broken", "CREATE TABLE x (; ")]
    with pytest.raises(psycopg.errors.SyntaxError):
        migrate(infra.pg_dsn, schema, broken)
    with psycopg.connect(infra.pg_dsn) as conn:
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert exists is None, "the schema of a failed migration run was left behind"
