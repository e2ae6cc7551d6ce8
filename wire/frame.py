"""Frames: a fixed, checksummed header followed by one message body.

Header (big-endian, `HEADER_SIZE` bytes):

    magic          u32  constants.wire_magic
    version        u8   constants.wire_version
    cluster_id     u32  frames from another cluster are refused
    message_type   u8   MessageType; unknown values are refused
    sender         u8   1-based node index; 0 = a client or control tool
    body_length    u32  at most constants.message_size_max
    body_checksum  u32  zlib.crc32 of the body
    header_checksum u32 zlib.crc32 of the header bytes before it

A header is judged on its own (`parse_header`), so a stream reader refuses an
oversize body length before reading the body.

The header is declared with construct (`HeaderStruct`); because every frame
passes through it, encode/decode use a `struct.Struct` derived from that
declaration (fixed-size integers only, so the two cannot disagree; a test checks
it). Bodies are declared with construct; the hot ones are packed by the
struct packers of `packed.py` (proved equal to the declarations by tests), the
others by construct.
"""

from __future__ import annotations

import struct
import zlib

import attrs
from construct import Struct

from ledgerpaxos import constants
from ledgerpaxos.core.messages import Message

from .bodies import CODEC_BY_CLASS, CODEC_BY_TYPE, MessageType
from .errors import FrameError
from .fields import U8, U32
from .packed import BODY_PACKERS
from .strict import build_value, parse_exact

# The checked part of the header; header_checksum covers exactly these bytes.
_HeaderFields = Struct(
    "magic" / U32,
    "version" / U8,
    "cluster_id" / U32,
    "message_type" / U8,  # checked against MessageType explicitly, after the checksum
    "sender" / U8,
    "body_length" / U32,
    "body_checksum" / U32,
)
HeaderStruct = Struct(
    "fields" / _HeaderFields,
    "header_checksum" / U32,
)
_CHECKED_SIZE: int = _HeaderFields.sizeof()
HEADER_SIZE: int = HeaderStruct.sizeof()


def _packer_for(fields: Struct) -> struct.Struct:
    """The `struct.Struct` equivalent of a construct Struct of big-endian integers."""
    codes = []
    for sub in fields.subcons:
        code = sub.subcon.fmtstr
        assert code[0] == ">" and len(code) == 2, f"{sub.name} is not a fixed big-endian integer"
        codes.append(code[1:])
    return struct.Struct(">" + "".join(codes))


_FIELD_NAMES = tuple(sub.name for sub in _HeaderFields.subcons)
assert _FIELD_NAMES == (
    "magic",
    "version",
    "cluster_id",
    "message_type",
    "sender",
    "body_length",
    "body_checksum",
), "keep _HEADER_PACKER's unpacking below in declaration order"
_FIELDS_PACKER = _packer_for(_HeaderFields)
_CHECKSUM_PACKER = _packer_for(Struct("header_checksum" / U32))
_HEADER_PACKER = struct.Struct(_FIELDS_PACKER.format + _CHECKSUM_PACKER.format[1:])
assert _FIELDS_PACKER.size == _CHECKED_SIZE and _HEADER_PACKER.size == HEADER_SIZE

cluster_id_max = 0xFFFF_FFFF
_MESSAGE_TYPES: dict[int, MessageType] = {
    t.value: t for t in MessageType
}  # MessageType(b) costs more


@attrs.frozen(kw_only=True)
class Header:
    """A frame header that passed every check (checksums are not kept)."""

    magic: int
    version: int
    cluster_id: int
    message_type: MessageType
    sender: int  # 1-based node index; 0 = a client or control tool
    body_length: int


@attrs.frozen(kw_only=True)
class ParsedHeader:
    header: Header
    body_checksum: int


def _crc32(data: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFF_FFFF


# ---------------------------------------------------------------- encode


def encode_frame(message: Message, *, cluster_id: int, sender: int) -> bytes:
    """The whole frame (header and body) for `message`.

    Raises ValueError if the message cannot be carried (a string too long, a
    negative or too large integer, too many elements, a body above
    `message_size_max`) or `cluster_id`/`sender` are out of range: that is the
    caller's bug or bad user input, never a FrameError.
    """
    codec = CODEC_BY_CLASS.get(type(message))
    if codec is None:
        raise ValueError(f"not a message: {message!r}")
    if not 0 <= cluster_id <= cluster_id_max:
        raise ValueError(f"cluster id {cluster_id} does not fit in u32")
    if not 0 <= sender <= constants.replicas_max:
        raise ValueError(f"sender {sender} is not a node index (0..{constants.replicas_max})")
    packer = BODY_PACKERS.get(codec.message_class)
    if packer is not None:
        body = packer.encode(message)
    else:
        body = build_value(codec.field, message, codec.message_class.__name__)
    if len(body) > constants.message_size_max:
        raise ValueError(
            f"{codec.message_class.__name__} body of {len(body)} bytes exceeds "
            f"message_size_max ({constants.message_size_max})"
        )
    fields = _FIELDS_PACKER.pack(
        constants.wire_magic,
        constants.wire_version,
        cluster_id,
        codec.message_type,
        sender,
        len(body),
        _crc32(body),
    )
    return b"".join((fields, _CHECKSUM_PACKER.pack(_crc32(fields)), body))


# ---------------------------------------------------------------- decode


def parse_header(data: bytes | bytearray | memoryview, *, cluster_id: int) -> ParsedHeader:
    """Check and parse exactly HEADER_SIZE bytes; FrameError on anything wrong."""
    if len(data) != HEADER_SIZE:
        raise FrameError(f"header must be {HEADER_SIZE} bytes, found {len(data)}")
    # Fixed-size integers: unpacking HEADER_SIZE bytes cannot fail.
    (
        magic,
        version,
        frame_cluster_id,
        type_byte,
        sender,
        body_length,
        body_checksum,
        header_checksum,
    ) = _HEADER_PACKER.unpack(data)
    if magic != constants.wire_magic:
        raise FrameError(f"bad magic {magic:#010x}: not a ledgerpaxos peer")
    if header_checksum != _crc32(memoryview(data)[:_CHECKED_SIZE]):
        raise FrameError("header checksum mismatch")
    if version != constants.wire_version:
        raise FrameError(
            f"protocol version {version}, this replica speaks {constants.wire_version}"
        )
    if frame_cluster_id != cluster_id:
        raise FrameError(f"frame for cluster {frame_cluster_id}, this is cluster {cluster_id}")
    message_type = _MESSAGE_TYPES.get(type_byte)
    if message_type is None:
        raise FrameError(f"unknown message type {type_byte}")
    if sender > constants.replicas_max:
        raise FrameError(f"sender {sender} is not a node index")
    if body_length > constants.message_size_max:
        raise FrameError(
            f"declared body length {body_length} exceeds message_size_max "
            f"({constants.message_size_max})"
        )
    header = Header(
        magic=magic,
        version=version,
        cluster_id=frame_cluster_id,
        message_type=message_type,
        sender=sender,
        body_length=body_length,
    )
    return ParsedHeader(header=header, body_checksum=body_checksum)


def decode_body(parsed: ParsedHeader, body: bytes | bytearray | memoryview) -> Message:
    """The message in `body`, which must be exactly the body the header announced."""
    header = parsed.header
    if len(body) != header.body_length:
        raise FrameError(f"body of {len(body)} bytes, header announced {header.body_length}")
    if _crc32(body) != parsed.body_checksum:
        raise FrameError("body checksum mismatch")
    codec = CODEC_BY_TYPE[header.message_type]
    packer = BODY_PACKERS.get(codec.message_class)
    if packer is not None:
        packed: Message = packer.decode(body)
        return packed
    message: Message = parse_exact(codec.field, body, f"{codec.message_class.__name__} body")
    return message


def decode_frame(
    data: bytes | bytearray | memoryview, *, cluster_id: int
) -> tuple[Header, Message]:
    """Decode exactly one whole frame; FrameError on anything wrong, including
    a wrong cluster id, a truncated frame or bytes after it."""
    if len(data) < HEADER_SIZE:
        raise FrameError(f"truncated frame: {len(data)} bytes, header alone is {HEADER_SIZE}")
    view = memoryview(data)
    parsed = parse_header(view[:HEADER_SIZE], cluster_id=cluster_id)
    expected = HEADER_SIZE + parsed.header.body_length
    if len(data) != expected:
        raise FrameError(f"frame of {len(data)} bytes, header announced {expected}")
    return parsed.header, decode_body(parsed, view[HEADER_SIZE:])
