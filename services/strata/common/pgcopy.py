"""Rows for PostgreSQL's binary COPY, encoded here rather than value by value.

psycopg's `write_row` adapts each value through a dumper (several through Python
code: bytea, jsonb, uuid); for bulk inserts of tens of thousands of rows a second
that is most of the cost. These encoders build a row's bytes directly in the
binary COPY format (PostgreSQL docs, "COPY", Binary Format): a 16-bit field count,
then each field as a 32-bit length (-1 for NULL) and the type's binary ("send")
representation. The tests check every encoder against psycopg's own adapters
through a real server.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from numpy.typing import ArrayLike

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"

_LEN = struct.Struct(">i").pack
_FLOAT8 = struct.Struct(">id").pack
_INT8 = struct.Struct(">iq").pack
_COUNT = struct.Struct(">h").pack
_EMPTY_JSONB = _LEN(3) + b"\x01{}"
_UUID_LEN = _LEN(16)
_FLOAT4_OID = 700
_ARRAY_HEADER = struct.Struct(">iiiii").pack  # ndim, has nulls, element type, size, lower bound
_EMPTY_ARRAY_HEADER = struct.Struct(">iii").pack
_FLOAT4_ELEMENT = np.dtype([("length", ">i4"), ("value", ">f4")])


def text(value: str | None) -> bytes:
    if value is None:
        return NULL
    raw = value.encode()
    return _LEN(len(raw)) + raw


def bytea(value: bytes | None) -> bytes:
    return NULL if value is None else _LEN(len(value)) + value


def jsonb(value: Mapping[str, Any] | None) -> bytes:
    """A jsonb field: format version 1, then the JSON text."""
    if value is None:
        return NULL
    if not value:
        return _EMPTY_JSONB
    raw = b"\x01" + json.dumps(value).encode()
    return _LEN(len(raw)) + raw


def boolean(value: bool) -> bytes:
    return _TRUE if value else _FALSE


_TRUE, _FALSE = _LEN(1) + b"\x01", _LEN(1) + b"\x00"


def float8(value: float | None) -> bytes:
    return NULL if value is None else _FLOAT8(8, value)


def int8(value: int | None) -> bytes:
    return NULL if value is None else _INT8(8, value)


def uuid(value: str | bytes | None) -> bytes:
    """A uuid field from its canonical text (with or without dashes) or its 16 bytes."""
    if value is None:
        return NULL
    if isinstance(value, bytes):
        if len(value) != 16:
            raise ValueError(f"a uuid is 16 bytes, got {len(value)}")
        return _UUID_LEN + value
    return _UUID_LEN + bytes.fromhex(value.replace("-", ""))


def float4_array(values: ArrayLike | None) -> bytes:
    """A one-dimensional real[] without NULL elements."""
    if values is None:
        return NULL
    flat = np.asarray(values, dtype=np.float32).ravel()
    if not flat.size:  # PostgreSQL's empty array has no dimensions
        body = _EMPTY_ARRAY_HEADER(0, 0, _FLOAT4_OID)
        return _LEN(len(body)) + body
    elements = np.empty(flat.size, dtype=_FLOAT4_ELEMENT)
    elements["length"] = 4
    elements["value"] = flat
    body = _ARRAY_HEADER(1, 0, _FLOAT4_OID, flat.size, 1) + elements.tobytes()
    return _LEN(len(body)) + body


def row(fields: Sequence[bytes]) -> bytes:
    """One row from its encoded fields, in the COPY's column order."""
    return _COUNT(len(fields)) + b"".join(fields)


def copy_rows(
    conn: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    rows: Iterable[bytes],
    block: int = 256,
) -> None:
    """COPY encoded `rows` into `table` (`columns` in the rows' field order), in the
    caller's transaction. Rows go out `block` at a time as `rows` yields them, so the
    server stores the first while the caller still makes the rest."""
    with conn.cursor().copy(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        pending = [SIGNATURE]
        for encoded in rows:
            pending.append(encoded)
            if len(pending) >= block:
                copy.write(b"".join(pending))
                pending = []
        pending.append(TRAILER)
        copy.write(b"".join(pending))
