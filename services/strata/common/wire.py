"""Protobuf wire-format pieces, for hot paths that splice already-serialised fields.

A serialised message is the concatenation of its fields, in any order, and a
parser merges what it reads (protobuf encoding guide: "Concatenated messages",
"Field order"). A bulk writer can therefore serialise a message's constant
fields once and append the few that vary, instead of building and serialising a
message per record. Whatever uses this is tested against the same message built
through the protobuf API.
"""

from __future__ import annotations

_ONE_BYTE = [bytes((i,)) for i in range(128)]


def varint(value: int) -> bytes:
    """A base-128 varint of a non-negative integer."""
    if value < 128:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int) -> bytes:
    """The key of field `number` with wire type 2 (length-delimited)."""
    return varint(number << 3 | 2)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Field `number` of wire type 2 (a string, bytes or a sub-message) holding `payload`;
    empty for an empty payload, as proto3 leaves out an empty string."""
    if not payload:
        return b""
    return tag(number) + varint(len(payload)) + payload
