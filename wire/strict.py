"""Running construct with our error contract.

- Decoding (`parse_exact`): the bytes must parse and be consumed exactly; any
  failure — construct errors, bad UTF-8, unknown enum values, counts or lengths
  above their limits, trailing bytes — becomes `FrameError`, never anything else.
- Encoding (`build_value`): a value the format cannot carry (string too long,
  negative or too large for its unsigned field, too many elements, wrong type)
  raises `ValueError`. That is our own bug or bad user input, not a peer's fault,
  so it is deliberately *not* a `FrameError`.
"""

from __future__ import annotations

import io
from typing import Any

from construct import Construct, ConstructError

from .errors import FrameError

# UnicodeDecodeError is a ValueError; struct.error is wrapped by construct.
_PARSE_ERRORS = (ConstructError, ValueError, OverflowError)
_BUILD_ERRORS = (ConstructError, OverflowError)


def build_value(field: Construct, value: Any, what: str) -> bytes:
    """Encode `value` with `field`; ValueError if it does not fit."""
    try:
        data: bytes = field.build(value)
    except _BUILD_ERRORS as error:
        raise ValueError(f"cannot encode {what}: {error}") from error
    return data


def parse_exact(field: Construct, data: bytes | bytearray | memoryview, what: str) -> Any:
    """Decode all of `data` with `field`; FrameError if malformed or not consumed exactly."""
    stream = io.BytesIO(data)
    try:
        value = field.parse_stream(stream)
    except _PARSE_ERRORS as error:
        raise FrameError(f"malformed {what}: {error}") from error
    trailing = len(data) - stream.tell()
    if trailing:
        raise FrameError(f"malformed {what}: {trailing} trailing bytes")
    return value
