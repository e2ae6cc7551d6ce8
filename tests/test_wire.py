"""The wire codec: round trips, frame checks, stream reassembly, strict bodies."""

from __future__ import annotations

import struct
import typing
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from ledgerpaxos import constants
from ledgerpaxos.core import messages as m
from tests import strategies as lst
from wire import (
    HEADER_SIZE,
    FrameDecoder,
    FrameError,
    MessageType,
    decode_frame,
    encode_frame,
)

CLUSTER = 0xC1A5

# An independent description of the header, to forge frames the codec would never write.
HEADER_FORMAT = struct.Struct(">IBIBBIII")


def forge_frame(
    body: bytes,
    *,
    message_type: int,
    cluster_id: int = CLUSTER,
    sender: int = 1,
    magic: int = constants.wire_magic,
    version: int = constants.wire_version,
    body_length: int | None = None,
    body_checksum: int | None = None,
    header_checksum: int | None = None,
) -> bytes:
    """A frame with any header fields; checksums are correct unless given."""
    fields = struct.pack(
        ">IBIBBII",
        magic,
        version,
        cluster_id,
        message_type,
        sender,
        len(body) if body_length is None else body_length,
        zlib.crc32(body) if body_checksum is None else body_checksum,
    )
    checksum = zlib.crc32(fields) if header_checksum is None else header_checksum
    return fields + struct.pack(">I", checksum) + body


def reframe(frame: bytes, *, body: bytes | None = None, message_type: int | None = None) -> bytes:
    """`frame` with its body and/or type replaced, every length and checksum made valid."""
    magic, version, cluster_id, type_byte, sender, _, _, _ = HEADER_FORMAT.unpack(
        frame[:HEADER_SIZE]
    )
    return forge_frame(
        frame[HEADER_SIZE:] if body is None else body,
        message_type=type_byte if message_type is None else message_type,
        cluster_id=cluster_id,
        sender=sender,
        magic=magic,
        version=version,
    )


def body_of(message: m.Message) -> bytes:
    return encode_frame(message, cluster_id=CLUSTER, sender=1)[HEADER_SIZE:]


def type_of(message: m.Message) -> int:
    return encode_frame(message, cluster_id=CLUSTER, sender=1)[9]


BALLOT = m.Ballot(7, 3)
TRANSFER = m.Transfer(sender="A", receiver="B", amount=5)
COMMAND = m.Command(
    client_id="c1", request_no=9, kind=m.CommandKind.transfer, transfers=(TRANSFER,)
)
ENTRY = m.LogEntry(slot=4, ballot=BALLOT, batch=(COMMAND,))
SNAPSHOT = m.Snapshot(
    slot=10,
    balances=(("A", 5), ("B", 15)),
    clients=(
        m.ClientEntry(
            client_id="c1",
            request_no=9,
            outcome=m.Outcome(results=(m.TransferResult(ok=False, reason="insufficient funds"),)),
        ),
    ),
    digest=bytes(range(32)),
    chain=bytes(range(16)),
)
EXAMPLES: list[m.Message] = [
    m.PreVote(ballot=BALLOT),
    m.PreVoteReply(ballot=BALLOT, granted=True),
    m.Prepare(ballot=BALLOT),
    m.Promise(ballot=BALLOT, checkpoint_slot=2, commit_slot=3, entries=(ENTRY,)),
    m.Accept(
        ballot=BALLOT,
        slot=5,
        batch=(COMMAND, COMMAND),
        commit_slot=4,
        commit_chain=bytes(16),
        purge_slot=0,
    ),
    m.Accept(
        ballot=BALLOT, slot=6, batch=m.NOOP, commit_slot=4, commit_chain=bytes(16), purge_slot=0
    ),
    m.NewView(ballot=BALLOT, entries=(ENTRY,), commit_slot=3, commit_chain=bytes(16), purge_slot=0),
    m.Accepted(ballot=BALLOT, slot=5, digest=bytes(16)),
    m.AcceptMany(
        ballot=BALLOT,
        entries=(ENTRY, m.LogEntry(slot=ENTRY.slot + 1, ballot=BALLOT, batch=m.NOOP)),
        commit_slot=3,
        commit_chain=bytes(16),
        purge_slot=0,
    ),
    m.AcceptedMany(ballot=BALLOT, votes=((5, bytes(16)), (6, b"\x01" * 16))),
    m.Nack(ballot=BALLOT, promised=m.Ballot(8, 1)),
    m.Heartbeat(ballot=BALLOT, commit_slot=5, commit_chain=bytes(16), purge_slot=0),
    m.HeartbeatAck(ballot=BALLOT, executed_slot=5, checkpoint_slot=0, checkpoint_digest=b""),
    m.CatchupRequest(after_slot=3, nonce=1),
    m.CatchupReply(entries=(ENTRY,), commit_slot=4, chain=bytes(16), nonce=1),
    m.InstallCheckpoint(snapshot=SNAPSHOT, nonce=7),
    m.RejoinRequest(nonce=2**64 - 1),
    m.RejoinReply(nonce=3, promised=BALLOT, checkpoint_slot=2, commit_slot=4, entries=(ENTRY,)),
    m.ClientRequest(command=COMMAND),
    m.ClientRequest(command=m.Command(client_id="c2", request_no=1, kind=m.CommandKind.read)),
    m.ClientReply(
        client_id="c2",
        request_no=1,
        outcome=m.Outcome(balances=(("A", 10), ("B", 10))),
        leader="n3",
    ),
    m.ClientReply(client_id="c1", request_no=9, outcome=m.Outcome(), leader=None),
    m.ControlRequest(op=m.ControlOp.print_status, argument=4),
    m.ControlReply(op=m.ControlOp.print_db, ok=True, body='{"A": 10}'),
]


def test_every_message_class_has_a_strategy_and_an_example() -> None:
    classes = set(typing.get_args(m.Message))
    assert set(lst.MESSAGE_STRATEGIES) == classes
    assert {type(example) for example in EXAMPLES} == classes


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda message: type(message).__name__)
def test_example_round_trips(message: m.Message) -> None:
    frame = encode_frame(message, cluster_id=CLUSTER, sender=2)
    header, decoded = decode_frame(frame, cluster_id=CLUSTER)
    assert decoded == message
    assert header == wire.Header(
        magic=constants.wire_magic,
        version=constants.wire_version,
        cluster_id=CLUSTER,
        message_type=header.message_type,
        sender=2,
        body_length=len(frame) - HEADER_SIZE,
    )
    assert isinstance(header.message_type, MessageType)


@pytest.mark.parametrize(
    "message_class", list(lst.MESSAGE_STRATEGIES), ids=lambda cls: cls.__name__
)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), cluster_id=lst.cluster_ids, sender=lst.senders)
def test_every_message_type_round_trips(
    message_class: type, data: st.DataObject, cluster_id: int, sender: int
) -> None:
    message = data.draw(lst.MESSAGE_STRATEGIES[message_class])
    frame = encode_frame(message, cluster_id=cluster_id, sender=sender)
    header, decoded = decode_frame(frame, cluster_id=cluster_id)
    assert decoded == message
    assert (header.sender, header.cluster_id, header.body_length) == (
        sender,
        cluster_id,
        len(frame) - HEADER_SIZE,
    )
    # The encoding is canonical: one value, one byte string.
    assert encode_frame(decoded, cluster_id=cluster_id, sender=sender) == frame


def test_message_types_are_distinct_per_class() -> None:
    types = {type(example): type_of(example) for example in EXAMPLES}
    assert len(set(types.values())) == len(types)
    assert set(types.values()) == {int(t) for t in MessageType}


@settings(max_examples=200, deadline=None)
@given(record=lst.wal_records())
def test_every_record_type_round_trips(record: m.WalRecord) -> None:
    data = wire.encode_record(record)
    assert wire.decode_record(data) == record
    assert data[0] in {int(t) for t in wire.RecordType}


@settings(max_examples=100, deadline=None)
@given(snapshot=lst.snapshots())
def test_snapshot_round_trips(snapshot: m.Snapshot) -> None:
    assert wire.decode_snapshot(wire.encode_snapshot(snapshot)) == snapshot


def test_decoded_collections_are_tuples_and_enums_are_members() -> None:
    _, decoded = decode_frame(
        encode_frame(EXAMPLES[4], cluster_id=CLUSTER, sender=1), cluster_id=CLUSTER
    )
    assert isinstance(decoded, m.Accept)
    assert type(decoded.batch) is tuple and type(decoded.batch[0].transfers) is tuple
    assert type(decoded.batch[0].kind) is m.CommandKind


def test_golden_heartbeat_bytes() -> None:
    """Pins the format: if this changes, bump constants.wire_version."""
    frame = encode_frame(
        m.Heartbeat(ballot=m.Ballot(3, 2), commit_slot=10, commit_chain=bytes(16), purge_slot=5),
        cluster_id=7,
        sender=2,
    )
    assert frame.hex() == (
        "4c504158"  # magic "LPAX"
        "05"  # version
        "00000007"  # cluster id
        "09"  # message type: heartbeat
        "02"  # sender
        "0000002a"  # body length: 42
        "95702ac7"  # crc32 of the body
        "75679dd8"  # crc32 of the 19 header bytes above
        "0000000000000003"
        "02"  # ballot 3.2
        "000000000000000a"  # commit slot
        "0000000000000005"  # purge slot
        "10"  # commit chain: 16 bytes
        "00000000000000000000000000000000"
    )
    assert zlib.crc32(frame[:19]).to_bytes(4, "big") == frame[19:23]
    assert HEADER_SIZE == 23


def test_header_fast_path_agrees_with_construct_declaration() -> None:
    from wire.frame import HeaderStruct

    frame = encode_frame(EXAMPLES[9], cluster_id=CLUSTER, sender=4)
    parsed = HeaderStruct.parse(frame[:HEADER_SIZE])
    header, _ = decode_frame(frame, cluster_id=CLUSTER)
    assert (parsed.fields.magic, parsed.fields.version, parsed.fields.cluster_id) == (
        header.magic,
        header.version,
        header.cluster_id,
    )
    assert (parsed.fields.message_type, parsed.fields.sender, parsed.fields.body_length) == (
        header.message_type,
        header.sender,
        header.body_length,
    )
    assert parsed.fields.body_checksum == zlib.crc32(frame[HEADER_SIZE:])
    assert parsed.header_checksum == zlib.crc32(frame[: HEADER_SIZE - 4])


def test_strings_at_their_maximum_length_fit() -> None:
    name = "é" * (constants.account_name_length_max // 2)  # 2 bytes each
    client = "x" * constants.client_id_length_max
    command = m.Command(
        client_id=client,
        request_no=2**64 - 1,
        kind=m.CommandKind.transfer,
        transfers=(m.Transfer(sender=name, receiver=name, amount=-(2**63)),),
    )
    message = m.ClientRequest(command=command)
    assert (
        decode_frame(encode_frame(message, cluster_id=CLUSTER, sender=0), cluster_id=CLUSTER)[1]
        == message
    )
    reply = m.ClientReply(
        client_id=client,
        request_no=1,
        outcome=m.Outcome(
            results=(m.TransferResult(ok=False, reason="r" * constants.reason_length_max),)
        ),
        leader="n" * constants.node_id_length_max,
    )
    assert (
        decode_frame(encode_frame(reply, cluster_id=CLUSTER, sender=0), cluster_id=CLUSTER)[1]
        == reply
    )


# ---------------------------------------------------------------- stream reassembly


def stream_of_examples() -> tuple[bytes, list[m.Message]]:
    frames = [encode_frame(message, cluster_id=CLUSTER, sender=1) for message in EXAMPLES]
    return b"".join(frames), list(EXAMPLES)


def test_frame_split_at_every_byte_position() -> None:
    for message in EXAMPLES:
        frame = encode_frame(message, cluster_id=CLUSTER, sender=1)
        for split in range(len(frame) + 1):
            decoder = FrameDecoder(cluster_id=CLUSTER)
            got = decoder.feed(frame[:split]) + decoder.feed(frame[split:])
            assert [decoded for _, decoded in got] == [message], (type(message).__name__, split)
            assert decoder.buffered == 0


def test_stream_of_frames_split_at_every_byte_position() -> None:
    data, expected = stream_of_examples()
    for split in range(len(data) + 1):
        decoder = FrameDecoder(cluster_id=CLUSTER)
        got = decoder.feed(data[:split]) + decoder.feed(data[split:])
        assert [decoded for _, decoded in got] == expected


def test_stream_fed_one_byte_at_a_time() -> None:
    data, expected = stream_of_examples()
    decoder = FrameDecoder(cluster_id=CLUSTER)
    got = []
    for index in range(len(data)):
        got += decoder.feed(data[index : index + 1])
        assert decoder.buffered == (index + 1) - sum(
            len(encode_frame(message, cluster_id=CLUSTER, sender=1)) for _, message in got
        )
    assert [decoded for _, decoded in got] == expected


@settings(max_examples=100, deadline=None)
@given(messages=st.lists(lst.messages(), max_size=5), data=st.data())
def test_random_chunking_yields_the_same_messages(
    messages: list[m.Message], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(message, cluster_id=CLUSTER, sender=3) for message in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder(cluster_id=CLUSTER)
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[start:end])
    assert [decoded for _, decoded in got] == messages
    assert decoder.buffered == 0


def test_large_frame_in_small_chunks() -> None:
    message = m.ControlReply(op=m.ControlOp.print_log, ok=True, body="x" * 1_000_000)
    frame = encode_frame(message, cluster_id=CLUSTER, sender=1)
    decoder = FrameDecoder(cluster_id=CLUSTER)
    got = []
    for start in range(0, len(frame), 4096):
        got += decoder.feed(memoryview(frame)[start : start + 4096])
    assert [decoded for _, decoded in got] == [message]


def test_partial_frame_stays_buffered() -> None:
    frame = encode_frame(EXAMPLES[0], cluster_id=CLUSTER, sender=1)
    decoder = FrameDecoder(cluster_id=CLUSTER)
    assert decoder.feed(frame + frame[:5]) == [decode_frame(frame, cluster_id=CLUSTER)]
    assert decoder.buffered == 5


def test_decoder_is_unusable_after_an_error() -> None:
    good = encode_frame(EXAMPLES[0], cluster_id=CLUSTER, sender=1)
    decoder = FrameDecoder(cluster_id=CLUSTER)
    with pytest.raises(FrameError):
        decoder.feed(good + b"\x00" * HEADER_SIZE)
    with pytest.raises(FrameError):
        decoder.feed(good)


# ---------------------------------------------------------------- refused headers


def refuse(frame: bytes, match: str) -> None:
    """Both entry points refuse `frame`; the decoder as soon as the header is in."""
    with pytest.raises(FrameError, match=match):
        decode_frame(frame, cluster_id=CLUSTER)
    with pytest.raises(FrameError, match=match):
        FrameDecoder(cluster_id=CLUSTER).feed(frame)


def test_oversize_body_length_refused_from_the_header_alone() -> None:
    header = forge_frame(
        b"", message_type=MessageType.accept, body_length=constants.message_size_max + 1
    )
    assert len(header) == HEADER_SIZE
    decoder = FrameDecoder(cluster_id=CLUSTER)
    assert decoder.feed(header[:-1]) == []
    with pytest.raises(FrameError, match="message_size_max"):
        decoder.feed(header[-1:])
    with pytest.raises(FrameError, match="message_size_max"):
        decode_frame(header, cluster_id=CLUSTER)
    huge = forge_frame(b"", message_type=MessageType.accept, body_length=2**32 - 1)
    with pytest.raises(FrameError, match="message_size_max"):
        FrameDecoder(cluster_id=CLUSTER).feed(huge)


def test_body_length_at_the_limit_waits_for_the_body() -> None:
    header = forge_frame(
        b"", message_type=MessageType.control_reply, body_length=constants.message_size_max
    )
    decoder = FrameDecoder(cluster_id=CLUSTER)
    assert decoder.feed(header) == []
    assert decoder.buffered == HEADER_SIZE


def test_wrong_magic_refused() -> None:
    body = body_of(EXAMPLES[0])
    refuse(forge_frame(body, message_type=MessageType.pre_vote, magic=0x48545450), "magic")
    refuse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "magic")


def test_wrong_version_refused() -> None:
    body = body_of(EXAMPLES[0])
    refuse(
        forge_frame(body, message_type=MessageType.pre_vote, version=constants.wire_version + 1),
        "version",
    )


def test_wrong_cluster_refused() -> None:
    body = body_of(EXAMPLES[0])
    refuse(forge_frame(body, message_type=MessageType.pre_vote, cluster_id=CLUSTER + 1), "cluster")


def test_header_checksum_mismatch_refused() -> None:
    frame = bytearray(encode_frame(EXAMPLES[0], cluster_id=CLUSTER, sender=1))
    frame[19] ^= 0x01
    refuse(bytes(frame), "header checksum")
    frame = bytearray(encode_frame(EXAMPLES[0], cluster_id=CLUSTER, sender=1))
    frame[10] ^= 0x04  # sender byte, not re-checksummed
    refuse(bytes(frame), "header checksum")


def test_body_checksum_mismatch_refused() -> None:
    frame = bytearray(encode_frame(EXAMPLES[3], cluster_id=CLUSTER, sender=1))
    frame[-1] ^= 0x80
    refuse(bytes(frame), "body checksum")


@pytest.mark.parametrize("type_byte", [0, len(MessageType) + 1, 0x7F, 0xFF])
def test_unknown_message_type_refused(type_byte: int) -> None:
    refuse(forge_frame(body_of(EXAMPLES[0]), message_type=type_byte), "unknown message type")


def test_sender_above_replicas_max_refused() -> None:
    refuse(
        forge_frame(
            body_of(EXAMPLES[0]),
            message_type=MessageType.pre_vote,
            sender=constants.replicas_max + 1,
        ),
        "sender",
    )


def test_decode_frame_wants_exactly_one_frame() -> None:
    frame = encode_frame(EXAMPLES[4], cluster_id=CLUSTER, sender=1)
    with pytest.raises(FrameError, match="announced"):
        decode_frame(frame + b"\x00", cluster_id=CLUSTER)
    with pytest.raises(FrameError, match="announced"):
        decode_frame(frame + frame, cluster_id=CLUSTER)
    with pytest.raises(FrameError, match="announced"):
        decode_frame(frame[:-1], cluster_id=CLUSTER)
    with pytest.raises(FrameError, match="truncated"):
        decode_frame(frame[: HEADER_SIZE - 1], cluster_id=CLUSTER)
    with pytest.raises(FrameError):
        decode_frame(b"", cluster_id=CLUSTER)


# ---------------------------------------------------------------- refused bodies (valid checksums)

HEARTBEAT = m.Heartbeat(ballot=BALLOT, commit_slot=5, commit_chain=bytes(16), purge_slot=0)


def body_refused(frame: bytes, match: str | None = None) -> None:
    with pytest.raises(FrameError, match=match):
        decode_frame(frame, cluster_id=CLUSTER)
    with pytest.raises(FrameError, match=match):
        FrameDecoder(cluster_id=CLUSTER).feed(frame)


def test_body_with_trailing_bytes_refused() -> None:
    frame = encode_frame(HEARTBEAT, cluster_id=CLUSTER, sender=1)
    body_refused(reframe(frame, body=frame[HEADER_SIZE:] + b"\x00"), "trailing")


def test_truncated_body_refused() -> None:
    frame = encode_frame(HEARTBEAT, cluster_id=CLUSTER, sender=1)
    body_refused(reframe(frame, body=frame[HEADER_SIZE:-1]))
    body_refused(reframe(frame, body=b""))


def test_body_of_another_type_refused() -> None:
    frame = encode_frame(EXAMPLES[4], cluster_id=CLUSTER, sender=1)  # an Accept
    body_refused(reframe(frame, message_type=MessageType.heartbeat), "Heartbeat")


def test_ballot_node_above_replicas_max_refused() -> None:
    body = bytearray(body_of(HEARTBEAT))
    assert body[8] == BALLOT.node
    body[8] = constants.replicas_max + 1
    body_refused(forge_frame(bytes(body), message_type=MessageType.heartbeat))


def test_flag_other_than_zero_or_one_refused() -> None:
    message = m.PreVoteReply(ballot=BALLOT, granted=True)
    body = bytearray(body_of(message))
    assert body[-1] == 1
    body[-1] = 2
    body_refused(forge_frame(bytes(body), message_type=MessageType.pre_vote_reply), "0 or 1")


def test_optional_presence_flag_is_strict() -> None:
    message = m.ClientReply(client_id="c", request_no=1, outcome=m.Outcome(), leader=None)
    body = bytearray(body_of(message))
    assert body[-1] == 0
    body[-1] = 2
    body_refused(forge_frame(bytes(body), message_type=MessageType.client_reply), "0 or 1")


def test_unknown_command_kind_refused() -> None:
    message = m.ClientRequest(
        command=m.Command(client_id="c", request_no=1, kind=m.CommandKind.read)
    )
    body = bytearray(body_of(message))
    kind_at = 1 + 1 + 8 + 8  # client id, request number, session
    assert body[kind_at] == m.CommandKind.read
    for bad in (0, 5, 255):
        body[kind_at] = bad
        body_refused(
            forge_frame(bytes(body), message_type=MessageType.client_request), "CommandKind"
        )


def test_unknown_control_op_refused() -> None:
    body = bytearray(body_of(m.ControlRequest(op=m.ControlOp.ping)))
    for bad in (0, 9, 255):
        body[0] = bad
        body_refused(
            forge_frame(bytes(body), message_type=MessageType.control_request), "ControlOp"
        )


def test_invalid_utf8_refused() -> None:
    message = m.CatchupReply(entries=(ENTRY,), commit_slot=4, chain=bytes(16), nonce=1)
    body = body_of(message)
    at = body.index(b"c1")
    for bad in (b"\xff\xfe", b"\xc0\x80", b"\xed\xa0"):  # invalid, overlong NUL, surrogate half
        forged = body[:at] + bad + body[at + 2 :]
        body_refused(forge_frame(forged, message_type=MessageType.catchup_reply), "UTF-8")


def test_string_longer_than_its_maximum_refused() -> None:
    name = b"A" * (constants.account_name_length_max + 1)
    body = (
        bytes([2])
        + b"c1"
        + (1).to_bytes(8, "big")
        + (7).to_bytes(8, "big")  # session
        + bytes([m.CommandKind.transfer])
        + (1).to_bytes(4, "big")
        + bytes([len(name)])
        + name
        + bytes([1])
        + b"B"
        + (5).to_bytes(8, "big")
        + bytes(5)  # no accounts, no owner
    )
    body_refused(forge_frame(body, message_type=MessageType.client_request))
    # The same body with a legal name decodes: the forgery above is exact.
    legal = body.replace(bytes([len(name)]) + name, bytes([1]) + b"A")
    assert decode_frame(
        forge_frame(legal, message_type=MessageType.client_request), cluster_id=CLUSTER
    )[1] == (
        m.ClientRequest(
            command=m.Command(
                client_id="c1",
                request_no=1,
                kind=m.CommandKind.transfer,
                session=7,
                transfers=(m.Transfer(sender="A", receiver="B", amount=5),),
            )
        )
    )


def test_element_count_above_its_maximum_refused_before_elements() -> None:
    count = constants.batch_commands_max + 1
    body = body_of(
        m.Accept(
            ballot=BALLOT, slot=1, batch=(), commit_slot=0, commit_chain=bytes(16), purge_slot=0
        )
    )
    assert body[-4:] == b"\x00\x00\x00\x00"
    forged = body[:-4] + count.to_bytes(4, "big")  # no elements follow: refused on the count
    body_refused(forge_frame(forged, message_type=MessageType.accept), "validation")
    many = body[:-4] + (2**32 - 1).to_bytes(4, "big")
    body_refused(forge_frame(many, message_type=MessageType.promise))


def test_catchup_reply_above_catchup_slots_max_refused() -> None:
    nonce, commit_slot, chain = bytes(8), bytes(8), bytes((16,)) + bytes(16)
    count = (constants.catchup_slots_max + 1).to_bytes(4, "big")
    body = nonce + commit_slot + chain + count
    body_refused(forge_frame(body, message_type=MessageType.catchup_reply), "validation")


# ---------------------------------------------------------------- records and snapshots


def test_record_examples_round_trip() -> None:
    for record in (
        m.PromiseRecord(ballot=BALLOT),
        m.AcceptRecord(entry=ENTRY),
        m.CommitRecord(commit_slot=12),
    ):
        assert wire.decode_record(wire.encode_record(record)) == record


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x04" + bytes(8), b"\xff"])
def test_unknown_or_empty_record_refused(data: bytes) -> None:
    with pytest.raises(FrameError):
        wire.decode_record(data)


def test_record_with_trailing_bytes_refused() -> None:
    data = wire.encode_record(m.CommitRecord(commit_slot=12))
    with pytest.raises(FrameError, match="trailing"):
        wire.decode_record(data + b"\x00")
    with pytest.raises(FrameError):
        wire.decode_record(data[:-1])


def test_snapshot_with_trailing_or_missing_bytes_refused() -> None:
    data = wire.encode_snapshot(SNAPSHOT)
    with pytest.raises(FrameError, match="trailing"):
        wire.decode_snapshot(data + b"\x00")
    with pytest.raises(FrameError):
        wire.decode_snapshot(data[:-1])


def test_batch_codec_pair_round_trips() -> None:
    import io

    stream = io.BytesIO()
    wire.write_batch((COMMAND, COMMAND), stream)
    stream.seek(0)
    assert wire.read_batch(stream) == (COMMAND, COMMAND)


# ------------------------------------------------------- encode: ValueError if it does not fit


def encode(message: object) -> bytes:
    return encode_frame(message, cluster_id=CLUSTER, sender=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        m.Heartbeat(ballot=m.Ballot(-1, 1), commit_slot=0, commit_chain=bytes(16), purge_slot=0),
        m.Heartbeat(ballot=m.Ballot(2**64, 1), commit_slot=0, commit_chain=bytes(16), purge_slot=0),
        m.Heartbeat(
            ballot=m.Ballot(1, constants.replicas_max + 1),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        m.Heartbeat(ballot=BALLOT, commit_slot=-1, commit_chain=bytes(16), purge_slot=0),
        m.Heartbeat(ballot=BALLOT, commit_slot="5", commit_chain=bytes(16), purge_slot=0),  # type: ignore[arg-type]
        m.Heartbeat(ballot=None, commit_slot=0, commit_chain=bytes(16), purge_slot=0),  # type: ignore[arg-type]
        m.PreVoteReply(ballot=BALLOT, granted=1),  # type: ignore[arg-type]
        m.ClientRequest(
            command=m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender="A" * 33, receiver="B", amount=1),),
            )
        ),
        m.ClientRequest(
            command=m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender="é" * 17, receiver="B", amount=1),),  # 34 bytes
            )
        ),
        m.ClientRequest(
            command=m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender="A", receiver="B", amount=2**63),),
            )
        ),
        m.ClientRequest(
            command=m.Command(client_id="\udc80", request_no=1, kind=m.CommandKind.read)
        ),
        m.ClientRequest(
            command=m.Command(client_id="c" * 65, request_no=1, kind=m.CommandKind.read)
        ),
        m.ClientRequest(command=m.Command(client_id="c", request_no=-1, kind=m.CommandKind.read)),
        m.ClientRequest(command=m.Command(client_id="c", request_no=1, kind=5)),  # type: ignore[arg-type]
        m.Accept(
            ballot=BALLOT,
            slot=1,
            batch=(COMMAND,) * (constants.batch_commands_max + 1),
            commit_slot=0,
            commit_chain=bytes(16),
            purge_slot=0,
        ),
        m.CatchupReply(
            entries=(ENTRY,) * (constants.catchup_slots_max + 1),
            commit_slot=0,
            chain=bytes(16),
            nonce=1,
        ),
        m.ClientReply(client_id="c", request_no=1, outcome=m.Outcome(), leader="n" * 33),
        m.HeartbeatAck(
            ballot=BALLOT, executed_slot=0, checkpoint_slot=0, checkpoint_digest=bytes(256)
        ),
        m.ControlReply(op=m.ControlOp.ping, ok=True, body="x" * (constants.message_size_max + 1)),
    ],
    ids=lambda message: type(message).__name__,
)
def test_encode_refuses_values_that_do_not_fit(message: object) -> None:
    with pytest.raises(ValueError):
        encode(message)


def test_encode_refuses_bad_header_arguments_and_non_messages() -> None:
    with pytest.raises(ValueError):
        encode_frame(HEARTBEAT, cluster_id=-1, sender=1)
    with pytest.raises(ValueError):
        encode_frame(HEARTBEAT, cluster_id=2**32, sender=1)
    with pytest.raises(ValueError):
        encode_frame(HEARTBEAT, cluster_id=CLUSTER, sender=constants.replicas_max + 1)
    with pytest.raises(ValueError):
        encode(BALLOT)
    with pytest.raises(ValueError):
        wire.encode_record(HEARTBEAT)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        wire.encode_record(m.CommitRecord(commit_slot=-1))
    with pytest.raises(ValueError):
        wire.encode_snapshot(
            m.Snapshot(slot=0, balances=(("A", 2**63),), clients=(), digest=b"", chain=b"")
        )


def test_encode_errors_are_not_frame_errors() -> None:
    with pytest.raises(ValueError) as info:
        encode(m.Heartbeat(ballot=BALLOT, commit_slot=-1, commit_chain=bytes(16), purge_slot=0))
    assert not isinstance(info.value, FrameError)
