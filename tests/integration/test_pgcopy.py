"""The binary COPY encoders against psycopg's own adapters, through the real Postgres."""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb
from strata.common import pgarrays, pgcopy

COLUMNS = ("n", "t", "b", "j", "f", "i", "u", "v")
TABLE = (
    "CREATE TEMP TABLE {name} (n int8 PRIMARY KEY, t text, b bytea, j jsonb, f float8, "
    "i int8, u uuid, v real[])"
)

ROWS = [
    (1, "plain", b"\x00\x01\xff", {"a": "1", "b": "two"}, 0.25, 7, uuid.uuid4(), [1.5, -2.0]),
    (2, "", b"", {}, -1e300, -(2**63), uuid.uuid4(), [0.1, 1e-40, 3.4e38]),
    (3, "ünïcødé ✓ 汉字\ttab\nline", b"x" * 70_000, {"nested": {"k": [1, 2]}}, float("inf"),
     2**63 - 1, uuid.uuid4(), np.arange(300, dtype=np.float32)),
    (4, None, None, None, None, None, None, None),
    (5, "'quoted' \\ back", b"\\x00", {"ünï": "∂"}, 0.0, 0, uuid.uuid4(), []),
]  # fmt: skip


def _encode(row: tuple) -> bytes:  # type: ignore[type-arg]
    n, t, b, j, f, i, u, v = row
    return pgcopy.row(
        (
            pgcopy.int8(n),
            pgcopy.text(t),
            pgcopy.bytea(b),
            pgcopy.jsonb(j),
            pgcopy.float8(f),
            pgcopy.int8(i),
            # both spellings of a uuid: its text, and its 16 bytes
            pgcopy.uuid(None if u is None else (str(u) if n % 2 else u.bytes)),
            pgcopy.float4_array(v),
        )
    )


def test_encoded_rows_read_back_as_psycopg_writes_them(infra) -> None:
    with psycopg.connect(infra.pg_dsn) as conn:
        conn.execute(TABLE.format(name="ours"))
        conn.execute(TABLE.format(name="reference"))
        # Small blocks: the rows go out in several writes.
        pgcopy.copy_rows(conn, "ours", COLUMNS, (_encode(r) for r in ROWS), block=2)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO reference VALUES (%s, %s, %s, %s, %s, %s, %s, %s::real[])",
                [
                    (
                        n,
                        t,
                        b,
                        None if j is None else Jsonb(j),
                        f,
                        i,
                        u,
                        None if v is None else [float(x) for x in np.asarray(v, np.float32)],
                    )
                    for n, t, b, j, f, i, u, v in ROWS
                ],
            )
        ours = conn.execute("SELECT * FROM ours ORDER BY n").fetchall()
        reference = conn.execute("SELECT * FROM reference ORDER BY n").fetchall()
        assert len(ours) == len(ROWS)
        assert ours == reference
        # The values are the ones written, not merely the same on both sides.
        assert ours[0][3] == {"a": "1", "b": "two"} and ours[0][7] == [1.5, -2.0]
        assert ours[2][2] == b"x" * 70_000 and ours[4][7] == []
        assert all(v is None for v in ours[3][1:])


def test_no_rows_is_an_empty_copy(infra) -> None:
    with psycopg.connect(infra.pg_dsn) as conn:
        conn.execute(TABLE.format(name="empty"))
        pgcopy.copy_rows(conn, "empty", COLUMNS, iter(()))
        assert conn.execute("SELECT count(*) FROM empty").fetchone() == (0,)


def test_a_malformed_row_fails_the_copy_and_stores_nothing(infra) -> None:
    with psycopg.connect(infra.pg_dsn) as conn:
        conn.execute(TABLE.format(name="bad"))
        short = pgcopy.row((pgcopy.int8(1), pgcopy.text("only two fields")))
        with pytest.raises(psycopg.errors.BadCopyFileFormat):
            pgcopy.copy_rows(conn, "bad", COLUMNS, [_encode(ROWS[0]), short])
        conn.rollback()
        conn.execute(TABLE.format(name="bad"))
        assert conn.execute("SELECT count(*) FROM bad").fetchone() == (0,)


def test_a_uuid_must_be_sixteen_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        pgcopy.uuid(b"short")


def test_real_arrays_read_as_numpy_are_what_psycopg_reads(infra) -> None:
    """`pgarrays.numpy_cursor` reads real[] from the binary format as float32 arrays:
    the same values psycopg's own (text) reading gives, other columns unchanged."""
    values = [
        [1.5, -2.0],
        [0.1, 1e-40, 3.4e38, float("inf"), -0.0],
        [],
        None,
        np.linspace(-1, 1, 300, dtype=np.float32).tolist(),
    ]
    with psycopg.connect(infra.pg_dsn) as conn:
        conn.execute("CREATE TEMP TABLE arrays (n int8, t text, f float8, b bool, v real[])")
        for n, v in enumerate(values):
            conn.execute(
                "INSERT INTO arrays VALUES (%s, %s, %s, %s, %s::real[])",
                (n, f"row {n}", n / 4, n % 2 == 0, v),
            )
        query = "SELECT n, t, f, b, v FROM arrays ORDER BY n"
        reference = conn.execute(query).fetchall()
        ours = pgarrays.numpy_cursor(conn).execute(query).fetchall()
        assert [r[:4] for r in ours] == [r[:4] for r in reference]
        for (*_, got), (*_, want) in zip(ours, reference, strict=True):
            if want is None:
                assert got is None
                continue
            assert isinstance(got, np.ndarray) and got.dtype == np.float32
            # The server's float4s, exactly: psycopg's text reading gives them as float64.
            assert got.tolist() == np.asarray(want, dtype=np.float32).tolist()
        # A two-dimensional real[] comes back flat, in order.
        (flat,) = (
            pgarrays.numpy_cursor(conn)
            .execute("SELECT ARRAY[[1, 2, 3], [4, 5, 6]]::real[]")
            .fetchone()
        )
        assert flat.tolist() == [1, 2, 3, 4, 5, 6]
        # An array with a NULL element has no numpy reading: a clear error, not a guess.
        with pytest.raises(ValueError, match="NULL elements"):
            pgarrays.numpy_cursor(conn).execute("SELECT ARRAY[1, NULL]::real[]").fetchone()
