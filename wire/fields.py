"""Strict construct building blocks shared by frame bodies, WAL records and snapshots.

Every field here refuses what it cannot represent exactly:

- integers have fixed widths (a value that does not fit fails to build);
- booleans are one byte, 0 or 1 — any other byte is malformed;
- enums accept only their listed values;
- strings are UTF-8 with a length prefix and a maximum length in bytes;
- optional values carry an explicit presence flag;
- arrays carry an element count that is checked against a maximum *before*
  any element is parsed.

Parsing errors surface as `construct.ConstructError` (mostly `ValidationError`);
`wire.strict` turns them into `FrameError` (decode) or `ValueError` (encode).
Value classes map to construct dicts through `AttrsAdapter`, so nothing outside
`wire/` ever sees a construct `Container`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
from construct import (
    Adapter,
    Construct,
    ExprValidator,
    GreedyBytes,
    If,
    Int8ub,
    Int32ub,
    Int64sb,
    Int64ub,
    Prefixed,
    PrefixedArray,
    Struct,
    ValidationError,
    this,
)

from ledgerpaxos import constants
from ledgerpaxos.core.messages import Ballot

# ---------------------------------------------------------------- scalars

U8 = Int8ub
U32 = Int32ub
U64 = Int64ub  # slots, request numbers, rounds
I64 = Int64sb  # amounts and balances (the ledger, not the codec, rejects amount <= 0)
Slot = U64
RequestNo = U64


class StrictEnum(Adapter):  # type: ignore[misc]  # construct is untyped
    """An `enum.IntEnum` stored as `subcon`; unknown values are malformed.

    construct's own `Enum` passes unknown integers through silently, so this
    adapter does the lookup itself and returns real enum members.
    """

    def __init__(self, subcon: Construct, enum_class: type[enum.IntEnum]) -> None:
        super().__init__(subcon)
        self.enum_class = enum_class

    def _decode(self, obj: int, context: Any, path: str) -> enum.IntEnum:
        try:
            return self.enum_class(obj)
        except ValueError:
            raise ValidationError(
                f"unknown {self.enum_class.__name__} value {obj}", path=path
            ) from None

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        return int(self.enum_class(obj))  # ValueError for a value not in the enum


class StrictFlag(Adapter):  # type: ignore[misc]  # construct is untyped
    """A boolean as one byte: 0 or 1, nothing else (no second encoding of True)."""

    def __init__(self) -> None:
        super().__init__(U8)

    def _decode(self, obj: int, context: Any, path: str) -> bool:
        if obj == 0:
            return False
        if obj == 1:
            return True
        raise ValidationError(f"flag byte must be 0 or 1, found {obj}", path=path)

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        if not isinstance(obj, bool):
            raise ValueError(f"expected a bool, found {obj!r}")
        return int(obj)


Flag = StrictFlag()


def _length_prefix(length_max: int) -> Construct:
    """The smallest of u8/u32 holding `length_max`, refusing anything above it."""
    prefix = U8 if length_max <= 0xFF else U32
    return ExprValidator(prefix, lambda length, ctx: length <= length_max)


def BoundedBytes(length_max: int) -> Construct:
    """Bytes with a length prefix; a declared length above `length_max` is refused
    before the bytes are read."""
    return Prefixed(_length_prefix(length_max), GreedyBytes)


class _Utf8(Adapter):  # type: ignore[misc]  # construct is untyped
    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        try:
            return obj.decode("utf-8")  # strict: no lone surrogates, no overlong forms
        except UnicodeDecodeError as error:
            raise ValidationError(f"invalid UTF-8: {error}", path=path) from None

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise ValueError(f"expected a str, found {obj!r}")
        return obj.encode("utf-8")  # UnicodeEncodeError (a ValueError) for surrogates


def BoundedString(length_max: int) -> Construct:
    """UTF-8 text of at most `length_max` bytes, with a length prefix."""
    return _Utf8(BoundedBytes(length_max))


AccountName = BoundedString(constants.account_name_length_max)
ClientId = BoundedString(constants.client_id_length_max)
NodeId = BoundedString(constants.node_id_length_max)
Reason = BoundedString(constants.reason_length_max)
# A digest (sha256 today); the one-byte prefix caps it at 255 bytes.
Digest = BoundedBytes(0xFF)

# An element of every array below takes at least one byte, so no body can hold
# more elements than it has bytes: the natural cap where no named limit exists.
count_max_default = constants.message_size_max


class BoundedArray(Adapter):  # type: ignore[misc]  # construct is untyped
    """A tuple of `subcon` values with a u32 element count.

    A count above `count_max` is refused before any element is parsed; parsing
    returns a tuple (value classes compare tuples, not lists).
    """

    def __init__(self, subcon: Construct, count_max: int = count_max_default) -> None:
        count = ExprValidator(U32, lambda count, ctx: count <= count_max)
        super().__init__(PrefixedArray(count, subcon))
        self.count_max = count_max

    def _decode(self, obj: list[Any], context: Any, path: str) -> tuple[Any, ...]:
        return tuple(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> Any:
        if not isinstance(obj, tuple | list):
            raise ValueError(f"expected a tuple, found {obj!r}")
        return obj


class Maybe(Adapter):  # type: ignore[misc]  # construct is untyped
    """`None` or a `subcon` value, behind an explicit presence flag."""

    def __init__(self, subcon: Construct) -> None:
        super().__init__(Struct("present" / Flag, "value" / If(this.present, subcon)))

    def _decode(self, obj: Any, context: Any, path: str) -> Any:
        return obj.value if obj.present else None

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        return {"present": obj is not None, "value": obj}


class AttrsAdapter(Adapter):  # type: ignore[misc]  # construct is untyped
    """Maps a frozen attrs value class to a `Struct` with the same field names.

    Encoding turns the value into a dict of its fields; decoding calls the class
    with the parsed fields. The names are checked when the codec is declared, so
    adding a field to a message without adding it here fails at import. The wire
    order is the order of the Struct, not of the class.
    """

    def __init__(self, value_class: type, struct: Struct) -> None:
        names = tuple(field.name for field in attrs.fields(value_class))
        struct_names = {sub.name for sub in struct.subcons if sub.name}
        if set(names) != struct_names:
            raise TypeError(
                f"wire struct for {value_class.__name__} has fields {sorted(struct_names)}, "
                f"the class has {sorted(names)}"
            )
        super().__init__(struct)
        self.value_class = value_class
        self.names = names

    def _decode(self, obj: Any, context: Any, path: str) -> Any:
        return self.value_class(**{name: obj[name] for name in self.names})

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        if not isinstance(obj, self.value_class):
            raise ValueError(f"expected {self.value_class.__name__}, found {obj!r}")
        return {name: getattr(obj, name) for name in self.names}


class Pair(Adapter):  # type: ignore[misc]  # construct is untyped
    """A 2-tuple stored as a two-field struct, e.g. (account, balance)."""

    def __init__(self, first: Construct, second: Construct) -> None:
        super().__init__(Struct("first" / first, "second" / second))

    def _decode(self, obj: Any, context: Any, path: str) -> tuple[Any, Any]:
        return (obj.first, obj.second)

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        if not isinstance(obj, tuple) or len(obj) != 2:
            raise ValueError(f"expected a pair, found {obj!r}")
        return {"first": obj[0], "second": obj[1]}


# ---------------------------------------------------------------- small values


class Triple(Adapter):  # type: ignore[misc]  # construct is untyped
    """A 3-tuple stored as a three-field struct, e.g. (account, owner, balance)."""

    def __init__(self, first: Construct, second: Construct, third: Construct) -> None:
        super().__init__(Struct("first" / first, "second" / second, "third" / third))

    def _decode(self, obj: Any, context: Any, path: str) -> tuple[Any, Any, Any]:
        return (obj.first, obj.second, obj.third)

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        if not isinstance(obj, tuple) or len(obj) != 3:
            raise ValueError(f"expected a 3-tuple, found {obj!r}")
        return {"first": obj[0], "second": obj[1], "third": obj[2]}


NodeIndex = ExprValidator(U8, lambda node, ctx: node <= constants.replicas_max)

BallotField = AttrsAdapter(Ballot, Struct("round" / U64, "node" / NodeIndex))

Balances = BoundedArray(Pair(AccountName, I64))
