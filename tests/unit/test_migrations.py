"""Migration files are discovered in order and malformed sets are refused."""

from pathlib import Path

import pytest
from strata.common.db import MigrationError, check_schema_name, kit_migrations, load_migrations


def _write(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_text(f"-- {n}\nSELECT 1;\n")
    return folder


def test_migrations_load_in_numeric_order(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", ["0002_b.sql", "0001_a.sql", "README.md"])
    got = load_migrations("svc", folder)
    assert [(m.version, m.name) for m in got] == [(1, "a"), (2, "b")]
    assert got[0].checksum != got[1].checksum


def test_gap_in_numbering_is_refused(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", ["0001_a.sql", "0003_c.sql"])
    with pytest.raises(MigrationError, match="without gaps"):
        load_migrations("svc", folder)


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m", ["1_a.sql"])
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        load_migrations("svc", folder)


def test_kit_ships_inbox_and_outbox() -> None:
    sql = kit_migrations()[0].sql_text
    assert "CREATE TABLE outbox" in sql and "CREATE TABLE inbox" in sql


@pytest.mark.parametrize("bad", ["Gateway", "1x", "a;drop", "x" * 64, ""])
def test_schema_names_are_safe_identifiers(bad: str) -> None:
    with pytest.raises(ValueError):
        check_schema_name(bad)
