"""Fuzzing the decoders: whatever the bytes, the answer is a message or FrameError.

And the format is canonical: any bytes that do decode re-encode to exactly the
same bytes, so a mutation can never smuggle a second spelling of a value past
the checksums.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wire
from ledgerpaxos.core import messages as m
from tests import strategies as lst
from tests.test_wire import CLUSTER, forge_frame, reframe
from wire import (
    HEADER_SIZE,
    FrameDecoder,
    FrameError,
    MessageType,
    decode_frame,
    encode_frame,
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_refuse(data: bytes) -> m.Message | None:
    """decode_frame returns a message or raises FrameError, never anything else."""
    try:
        header, message = decode_frame(data, cluster_id=CLUSTER)
    except FrameError:
        return None
    assert encode_frame(message, cluster_id=CLUSTER, sender=header.sender) == data
    return message


def feed_or_refuse(chunks: list[bytes]) -> list[m.Message] | None:
    """FrameDecoder.feed returns messages or raises FrameError, never anything else."""
    decoder = FrameDecoder(cluster_id=CLUSTER)
    got: list[m.Message] = []
    try:
        for chunk in chunks:
            got += [message for _, message in decoder.feed(chunk)]
    except FrameError:
        return None
    return got


def check_both(data: bytes) -> None:
    decoded = decode_or_refuse(data)
    streamed = feed_or_refuse([data])
    if decoded is not None:
        assert streamed == [decoded]


# ---------------------------------------------------------------- random bytes


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check_both(data)


@FUZZ
@given(
    body=st.binary(max_size=300),
    type_byte=st.integers(0, 255),
    sender=st.integers(0, 255),
)
def test_random_body_behind_a_valid_header(body: bytes, type_byte: int, sender: int) -> None:
    """Checksums and lengths are right, so the body parser itself faces the garbage."""
    check_both(forge_frame(body, message_type=type_byte, sender=sender))


@FUZZ
@given(
    body=st.binary(max_size=64),
    message_type=st.sampled_from(list(MessageType)),
    body_length=st.integers(0, 2**32 - 1),
    chunk=st.integers(1, 40),
)
def test_any_declared_length(
    body: bytes, message_type: MessageType, body_length: int, chunk: int
) -> None:
    frame = forge_frame(body, message_type=message_type, body_length=body_length)
    check_both(frame)
    feed_or_refuse([frame[i : i + chunk] for i in range(0, len(frame), chunk)])


# ---------------------------------------------------------------- mutated valid frames

Mutation = Callable[[bytes], bytes]


@st.composite
def mutations(draw: st.DrawFn, size: int) -> bytes | Mutation:
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "type", "length", "splice"]))
    if kind == "flip":
        flips = draw(
            st.lists(
                st.tuples(st.integers(0, max(size - 1, 0)), st.integers(1, 255)),
                min_size=1,
                max_size=4,
            )
        )

        def flip(data: bytes) -> bytes:
            out = bytearray(data)
            for at, mask in flips:
                if at < len(out):
                    out[at] ^= mask
            return bytes(out)

        return flip
    if kind == "truncate":
        at = draw(st.integers(0, size))
        return lambda data: data[:at]
    if kind == "extend":
        extra = draw(st.binary(min_size=1, max_size=16))
        return lambda data: data + extra
    if kind == "type":
        type_byte = draw(st.integers(0, 255))
        return lambda data: data[:9] + bytes([type_byte]) + data[10:]
    if kind == "length":
        length = draw(st.integers(0, 2**32 - 1) | st.integers(max(size - HEADER_SIZE - 8, 0), size))
        return lambda data: data[:11] + length.to_bytes(4, "big") + data[15:]
    at = draw(st.integers(0, size))
    insert = draw(st.binary(max_size=8))
    cut = draw(st.integers(0, 8))
    return lambda data: data[:at] + insert + data[at + cut :]


@FUZZ
@given(message=lst.messages(), data=st.data(), repair=st.booleans())
def test_mutated_frame(message: m.Message, data: st.DataObject, repair: bool) -> None:
    frame = encode_frame(message, cluster_id=CLUSTER, sender=1)
    mutate = data.draw(mutations(len(frame)))
    mutated = mutate(frame)
    check_both(mutated)
    if repair and len(mutated) >= HEADER_SIZE:
        # Same header fields (incl. a changed type byte), lengths and checksums made right.
        check_both(reframe(mutated[:HEADER_SIZE] + mutated[HEADER_SIZE:]))


@FUZZ
@given(message=lst.messages(), data=st.data())
def test_mutated_body_with_valid_checksums(message: m.Message, data: st.DataObject) -> None:
    frame = encode_frame(message, cluster_id=CLUSTER, sender=1)
    body = frame[HEADER_SIZE:]
    mutated_body = data.draw(mutations(len(body)))(body)
    check_both(reframe(frame, body=mutated_body))


@FUZZ
@given(messages=st.lists(lst.messages(), min_size=1, max_size=3), data=st.data())
def test_mutated_stream_in_random_chunks(messages: list[m.Message], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(message, cluster_id=CLUSTER, sender=2) for message in messages)
    mutated = data.draw(mutations(len(stream)))(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(mutated)), max_size=6)))
    chunks = [
        mutated[start:end] for start, end in zip([0, *cuts], [*cuts, len(mutated)], strict=True)
    ]
    got = feed_or_refuse(chunks)
    if got is not None and mutated == stream:
        assert got == messages


# ---------------------------------------------------------------- WAL records and snapshots


def record_or_refuse(data: bytes) -> None:
    try:
        record = wire.decode_record(data)
    except FrameError:
        return
    assert wire.encode_record(record) == data


def snapshot_or_refuse(data: bytes) -> None:
    try:
        snapshot = wire.decode_snapshot(data)
    except FrameError:
        return
    assert wire.encode_snapshot(snapshot) == data


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_record_and_snapshot_bytes(data: bytes) -> None:
    record_or_refuse(data)
    snapshot_or_refuse(data)


@FUZZ
@given(record=lst.wal_records(), data=st.data())
def test_mutated_record(record: m.WalRecord, data: st.DataObject) -> None:
    encoded = wire.encode_record(record)
    record_or_refuse(data.draw(mutations(len(encoded)))(encoded))


@settings(max_examples=200, deadline=None)
@given(snapshot=lst.snapshots(), data=st.data())
def test_mutated_snapshot(snapshot: m.Snapshot, data: st.DataObject) -> None:
    encoded = wire.encode_snapshot(snapshot)
    snapshot_or_refuse(data.draw(mutations(len(encoded)))(encoded))
