"""The ledgerpaxos wire format: frames on TCP, WAL record bodies, snapshot bodies.

Decoding raises `FrameError` and nothing else (the peer's fault: close the
connection, log, carry on). Encoding raises `ValueError` for a value the format
cannot carry (our bug or bad user input). Messages and records are the frozen
attrs classes of `ledgerpaxos.core.messages`; construct stays inside this package.

May import: ledgerpaxos.core.messages, ledgerpaxos.constants, construct, the
standard library.
"""

from .batch import read_batch, write_batch
from .bodies import MessageType
from .decoder import FrameDecoder
from .errors import FrameError
from .frame import HEADER_SIZE, Header, decode_frame, encode_frame
from .records import (
    RecordType,
    decode_record,
    decode_snapshot,
    encode_record,
    encode_snapshot,
)

__all__ = [
    "HEADER_SIZE",
    "FrameDecoder",
    "FrameError",
    "Header",
    "MessageType",
    "RecordType",
    "decode_frame",
    "decode_record",
    "decode_snapshot",
    "encode_frame",
    "encode_record",
    "encode_snapshot",
    "read_batch",
    "write_batch",
]
