"""real[] columns read as numpy arrays, straight from PostgreSQL's binary format.

psycopg reads a real[] as a Python list of Python floats: for a hand-out's 2,000
candidate rows of 64-float embeddings that is 128,000 float objects made, then packed
again into one numpy array (about 35 ms on this machine's cores, 5 to 10 times that
under load). A cursor from `numpy_cursor` asks for binary results and reads each
real[] as one float32 array over the bytes the server sent: the array's header (the
PostgreSQL docs' `array_send`: dimensions, a has-nulls flag, the element type, each
dimension's size and lower bound), then every element as a 32-bit length and a
big-endian float4. The tests check it against psycopg's own text reading through a
real server.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.adapt import Loader
from psycopg.pq import Format

_FLOAT4_ARRAY_OID = 1021
_HEADER = struct.Struct(">iii")  # dimensions, has nulls, element type
_ONE_DIMENSION = struct.Struct(">iiiii")  # the header, then the size and lower bound


def float4_array(data: bytes | bytearray | memoryview) -> NDArray[np.float32]:
    """A real[] from its binary representation, as a float32 array of its elements in
    order (a multi-dimensional array comes back flat; an empty one has no elements)."""
    dims, has_nulls, _ = _HEADER.unpack_from(data, 0)
    if dims == 0:
        return np.zeros(0, dtype=np.float32)
    if has_nulls:
        raise ValueError("a real[] with NULL elements cannot be read as a numpy array")
    if dims == 1:  # embeddings and vectors: no product to take
        count = _ONE_DIMENSION.unpack_from(data, 0)[3]
    else:
        count = math.prod(struct.unpack_from(f">{2 * dims}i", data, _HEADER.size)[::2])
    # Each element is its length (4) then its value: every other big-endian float4.
    words = np.frombuffer(data, dtype=">f4", count=2 * count, offset=_HEADER.size + 8 * dims)
    return words[1::2].astype(np.float32)


class Float4ArrayLoader(Loader):
    format = Format.BINARY

    def load(self, data: Any) -> NDArray[np.float32]:
        return float4_array(data)


def numpy_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """A cursor of `conn` whose results come in binary, its real[] columns as float32
    arrays (every other type as psycopg reads it)."""
    cursor = conn.cursor(binary=True)
    cursor.adapters.register_loader(_FLOAT4_ARRAY_OID, Float4ArrayLoader)
    return cursor
