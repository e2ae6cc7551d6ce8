"""FrameDecoder: sans-I/O reassembly of frames from a byte stream."""

from __future__ import annotations

from ledgerpaxos.core.messages import Message

from .errors import FrameError
from .frame import HEADER_SIZE, Header, ParsedHeader, decode_body, parse_header


class FrameDecoder:
    """Feed it whatever the socket returned; it hands back every complete frame.

    Partial data stays buffered. The first malformed frame raises FrameError
    (frames decoded earlier in the same `feed` call are dropped with it); after
    that the decoder is unusable and every further `feed` raises FrameError
    again: close the connection. A header declaring a body above
    `message_size_max` is refused as soon as the header is complete, without
    waiting for the body.

    The buffer is one bytearray consumed in bulk once per `feed`, so the cost is
    linear in the bytes fed, however they are split.
    """

    def __init__(self, *, cluster_id: int, body_size_max: int | None = None) -> None:
        """`body_size_max`: refuse larger frames (a connection's own bound,
        below message_size_max; settable until the frame it applies to)."""
        self._cluster_id = cluster_id
        self.body_size_max = body_size_max
        self._buffer = bytearray()
        self._header: ParsedHeader | None = None  # parsed header awaiting its body
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames (non-zero at EOF = truncated frame)."""
        return len(self._buffer) + (HEADER_SIZE if self._header is not None else 0)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[Header, Message]]:
        if self._error is not None:
            raise FrameError(f"decoder already failed: {self._error}")
        buffer = self._buffer
        buffer += data
        frames: list[tuple[Header, Message]] = []
        offset = 0
        try:
            with memoryview(buffer) as view:
                while True:
                    if self._header is None:
                        if len(buffer) - offset < HEADER_SIZE:
                            break
                        self._header = parse_header(
                            view[offset : offset + HEADER_SIZE], cluster_id=self._cluster_id
                        )
                        offset += HEADER_SIZE
                    body_length = self._header.header.body_length
                    limit = self.body_size_max
                    if limit is not None and body_length > limit:
                        raise FrameError(
                            f"a frame of {body_length} bytes, above the {limit} this "
                            "connection accepts"
                        )
                    if len(buffer) - offset < body_length:
                        break
                    body = view[offset : offset + body_length]
                    frames.append((self._header.header, decode_body(self._header, body)))
                    body.release()
                    offset += body_length
                    self._header = None
        except FrameError as error:
            self._error = error
            self._buffer = bytearray()
            raise
        del buffer[:offset]
        return frames
