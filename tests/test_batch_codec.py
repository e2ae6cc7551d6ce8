"""The struct packers agree with the construct declarations they stand in for.

`wire/batch.py` and `wire/packed.py` pack the hot values by hand; construct
declares the format (`BatchReference`, `CommandField`, `OutcomeField`,
`RecordStruct` and the body declarations of `wire/bodies.py`). For any value
the packers write exactly the declared bytes and read them back to an equal
value; for any bytes, mutated or random, they refuse exactly what the
declaration refuses (FrameError on decode) and accept exactly what it accepts,
with the same value. Values that do not fit are a ValueError on encode.

The body declarations use `Batch_` and `Outcome_` inside (which are the
packers again); those two are proved against their pure construct references
first, so the proof composes.
"""

from __future__ import annotations

import io
import os

import pytest
from construct import Construct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wire
from ledgerpaxos import constants
from ledgerpaxos.core import messages as m
from tests import strategies as lst
from tests.test_wire import forge_frame
from wire import FrameError
from wire.batch import (
    BatchReference,
    CommandField,
    decode_batch,
    encode_batch,
    read_batch,
    write_batch,
)
from wire.bodies import CODEC_BY_CLASS
from wire.packed import BODY_PACKERS, Outcome_, pack_outcome
from wire.records import (
    decode_record_reference,
    decode_snapshot_reference,
    encode_record_reference,
    encode_snapshot_reference,
)
from wire.strict import build_value, parse_exact
from wire.values import OutcomeField

# LP_CODEC_EXAMPLES=3000 for a deeper run (the default keeps the suite quick).
CHECK = settings(
    max_examples=int(os.environ.get("LP_CODEC_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PACKED_CLASSES = sorted(BODY_PACKERS, key=lambda cls: cls.__name__)


def uncached(batch: m.Batch) -> bytes:
    """The packer's own work, not a remembered encoding of the same object."""
    wire.batch.forget_recent()
    return encode_batch(batch)


def reference_decode(field: Construct, data: bytes) -> object | None:
    try:
        return parse_exact(field, data, "reference")
    except FrameError:
        return None


def packed_decode(decode: object, data: bytes) -> object | None:
    try:
        return decode(data)  # type: ignore[operator]
    except FrameError:
        return None


def mutations() -> st.SearchStrategy[tuple[str, int, int]]:
    return st.tuples(
        st.sampled_from(["flip", "cut", "insert", "delete", "set"]),
        st.integers(0, 10_000),
        st.integers(0, 255),
    )


def mutate(data: bytes, mutation: tuple[str, int, int]) -> bytes:
    kind, at, byte = mutation
    if not data:
        return bytes([byte])
    at %= len(data)
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (1 << (byte % 8))]) + data[at + 1 :]
    if kind == "cut":
        return data[:at]
    if kind == "insert":
        return data[:at] + bytes([byte]) + data[at:]
    if kind == "delete":
        return data[:at] + data[at + 1 :]
    return data[:at] + bytes([byte]) + data[at + 1 :]


# ---------------------------------------------------------------- batches

big_batches = st.lists(lst.commands(transfers_max=20), max_size=12).map(tuple)


@CHECK
@given(batch=st.one_of(lst.batches(), big_batches))
def test_batch_packer_writes_the_declared_bytes_and_reads_them_back(batch: m.Batch) -> None:
    data = uncached(batch)
    assert data == BatchReference.build(batch)
    decoded, end = decode_batch(data)
    assert end == len(data)
    assert decoded == batch == BatchReference.parse(data)
    assert type(decoded) is tuple
    assert all(type(c.transfers) is tuple and type(c.kind) is m.CommandKind for c in decoded)
    assert encode_batch(batch) == data  # remembered, the same bytes


@CHECK
@given(batch=lst.batches(), mutation=mutations())
def test_batch_packer_refuses_what_the_declaration_refuses(
    batch: m.Batch, mutation: tuple[str, int, int]
) -> None:
    data = mutate(uncached(batch), mutation)
    expected = reference_decode(BatchReference, data)
    got = packed_decode(lambda d: _decode_batch_exactly(d), data)
    assert got == expected


def _decode_batch_exactly(data: bytes) -> m.Batch:
    batch, end = decode_batch(data)
    if end != len(data):
        raise FrameError("trailing")
    return batch


@CHECK
@given(data=st.binary(max_size=200))
def test_batch_packer_agrees_on_random_bytes(data: bytes) -> None:
    assert packed_decode(_decode_batch_exactly, data) == reference_decode(BatchReference, data)


@CHECK
@given(command=lst.commands(transfers_max=30))
def test_command_packer_writes_the_declared_bytes(command: m.Command) -> None:
    data = wire.batch.pack_command(command)
    assert data == CommandField.build(command)
    assert wire.batch.decode_command(data) == (command, len(data))


def test_stream_pair_reads_one_batch_and_leaves_the_rest() -> None:
    batch = (m.Command(client_id="c", request_no=1, kind=m.CommandKind.read),)
    stream = io.BytesIO()
    write_batch(batch, stream)
    write_batch((), stream)
    stream.write(b"tail")
    stream.seek(0)
    assert read_batch(stream) == batch
    assert read_batch(stream) == ()
    assert stream.read() == b"tail"


# ---------------------------------------------------------------- outcomes


@CHECK
@given(outcome=lst.outcomes())
def test_outcome_packer_writes_the_declared_bytes(outcome: m.Outcome) -> None:
    data = pack_outcome(outcome)
    assert data == OutcomeField.build(outcome) == Outcome_.build(outcome)
    assert Outcome_.parse(data) == outcome == OutcomeField.parse(data)


@CHECK
@given(outcome=lst.outcomes(), mutation=mutations())
def test_outcome_packer_refuses_what_the_declaration_refuses(
    outcome: m.Outcome, mutation: tuple[str, int, int]
) -> None:
    data = mutate(pack_outcome(outcome), mutation)
    assert reference_decode(Outcome_, data) == reference_decode(OutcomeField, data)


# ---------------------------------------------------------------- message bodies


@pytest.mark.parametrize("message_class", PACKED_CLASSES, ids=lambda cls: cls.__name__)
def test_body_packer_writes_the_declared_bytes(message_class: type) -> None:
    codec = CODEC_BY_CLASS[message_class]
    packer = BODY_PACKERS[message_class]

    @CHECK
    @given(message=lst.MESSAGE_STRATEGIES[message_class])
    def check(message: m.Message) -> None:
        wire.batch.forget_recent()
        data = packer.encode(message)
        assert data == build_value(codec.field, message, "reference")
        assert packer.decode(data) == message == parse_exact(codec.field, data, "reference")
        assert packer.decode(memoryview(bytearray(data))) == message

    check()


@pytest.mark.parametrize("message_class", PACKED_CLASSES, ids=lambda cls: cls.__name__)
def test_body_packer_refuses_what_the_declaration_refuses(message_class: type) -> None:
    codec = CODEC_BY_CLASS[message_class]
    packer = BODY_PACKERS[message_class]

    @CHECK
    @given(message=lst.MESSAGE_STRATEGIES[message_class], mutation=mutations())
    def check(message: m.Message, mutation: tuple[str, int, int]) -> None:
        data = mutate(packer.encode(message), mutation)
        assert packed_decode(packer.decode, data) == reference_decode(codec.field, data)

    @CHECK
    @given(data=st.binary(max_size=120))
    def check_random(data: bytes) -> None:
        assert packed_decode(packer.decode, data) == reference_decode(codec.field, data)

    check()
    check_random()


# ---------------------------------------------------------------- WAL records


@CHECK
@given(record=lst.wal_records())
def test_record_packer_writes_the_declared_bytes(record: m.WalRecord) -> None:
    wire.batch.forget_recent()
    data = wire.encode_record(record)
    assert data == encode_record_reference(record)
    assert wire.decode_record(data) == record == decode_record_reference(data)


@CHECK
@given(record=lst.wal_records(), mutation=mutations())
def test_record_packer_refuses_what_the_declaration_refuses(
    record: m.WalRecord, mutation: tuple[str, int, int]
) -> None:
    data = mutate(wire.encode_record(record), mutation)
    try:
        expected: object = decode_record_reference(data)
    except FrameError:
        expected = None
    try:
        got: object = wire.decode_record(data)
    except FrameError:
        got = None
    assert got == expected


@CHECK
@given(snapshot=lst.snapshots())
def test_snapshot_packer_writes_the_declared_bytes(snapshot: m.Snapshot) -> None:
    data = wire.encode_snapshot(snapshot)
    assert data == encode_snapshot_reference(snapshot)
    assert wire.decode_snapshot(data) == snapshot == decode_snapshot_reference(data)


@CHECK
@given(snapshot=lst.snapshots(), mutation=mutations())
def test_snapshot_packer_refuses_what_the_declaration_refuses(
    snapshot: m.Snapshot, mutation: tuple[str, int, int]
) -> None:
    data = mutate(wire.encode_snapshot(snapshot), mutation)
    try:
        expected: object = decode_snapshot_reference(data)
    except FrameError:
        expected = None
    try:
        got: object = wire.decode_snapshot(data)
    except FrameError:
        got = None
    assert got == expected


# ---------------------------------------------------------------- strictness, by example

TRANSFER = m.Transfer(sender="A", receiver="B", amount=5)
COMMAND = m.Command(
    client_id="c1", request_no=7, kind=m.CommandKind.transfer, transfers=(TRANSFER,)
)
BALLOT = m.Ballot(3, 1)


def accept(batch: m.Batch) -> m.Accept:
    return m.Accept(
        ballot=BALLOT, slot=9, batch=batch, commit_slot=8, commit_chain=bytes(16), purge_slot=0
    )


def frame_of(message: m.Message) -> bytes:
    return wire.encode_frame(message, cluster_id=1, sender=1)


def refused(data: bytes, match: str | None = None) -> None:
    with pytest.raises(FrameError, match=match):
        wire.decode_frame(data, cluster_id=1)
    with pytest.raises(FrameError, match=match):
        wire.FrameDecoder(cluster_id=1).feed(data)


def reframe_body(frame: bytes, body: bytes) -> bytes:
    header = wire.decode_frame(frame, cluster_id=1)[0]
    return forge_frame(body, message_type=header.message_type, cluster_id=1)


@pytest.mark.parametrize("bad", [b"\xff", b"\x80", b"\xc0", b"\xed"])  # never valid as a last byte
def test_bad_utf8_in_any_name_refused_on_every_read_path(bad: bytes) -> None:
    command = m.Command(
        client_id="cX",
        request_no=7,
        kind=m.CommandKind.transfer,
        transfers=(m.Transfer(sender="AX", receiver="BX", amount=5),),
    )
    for message in (accept((command,)), m.ClientRequest(command=command)):
        frame = frame_of(message)
        body = frame[wire.HEADER_SIZE :]
        for name in (b"cX", b"AX", b"BX"):
            at = body.index(name) + 1
            refused(reframe_body(frame, body[:at] + bad + body[at + 1 :]), "UTF-8")
    record = wire.encode_record(
        m.AcceptRecord(entry=m.LogEntry(slot=1, ballot=BALLOT, batch=(command,)))
    )
    at = record.index(b"AX") + 1
    with pytest.raises(FrameError, match="UTF-8"):
        wire.decode_record(record[:at] + bad + record[at + 1 :])
    data = uncached((command,))
    at = data.index(b"BX") + 1
    with pytest.raises(FrameError, match="UTF-8"):
        read_batch(io.BytesIO(data[:at] + bad + data[at + 1 :]))


def test_counts_above_their_limits_refused_before_the_elements() -> None:
    empty = frame_of(accept(()))
    body = empty[wire.HEADER_SIZE :]
    for count in (constants.batch_commands_max + 1, 2**32 - 1):
        forged = body[:-4] + count.to_bytes(4, "big")
        refused(reframe_body(empty, forged), "validation")
    one = wire.batch.pack_command(
        m.Command(client_id="c", request_no=1, kind=m.CommandKind.transfer)
    )
    # client id "c", request number, kind, the transfer count, the account
    # count and the owner
    forged = one[:-9] + (constants.transfers_per_request_max + 1).to_bytes(4, "big")
    with pytest.raises(FrameError, match="validation"):
        read_batch(io.BytesIO((1).to_bytes(4, "big") + forged))
    forged = one[:-5] + (constants.accounts_per_request_max + 1).to_bytes(4, "big")
    with pytest.raises(FrameError, match="validation"):
        read_batch(io.BytesIO((1).to_bytes(4, "big") + forged))
    with pytest.raises(FrameError, match="validation"):
        wire.decode_record(bytes([2]) + bytes(17) + (2**31).to_bytes(4, "big"))
    reply = frame_of(m.ClientReply(client_id="c", request_no=1, outcome=m.Outcome(), leader=None))
    body = reply[wire.HEADER_SIZE :]
    results_at = 1 + 1 + 8
    assert body[results_at : results_at + 4] == bytes(4)
    forged = (
        body[:results_at]
        + (constants.transfers_per_request_max + 1).to_bytes(4, "big")
        + body[results_at + 4 :]
    )
    refused(reframe_body(reply, forged), "validation")
    long_name = bytes([constants.account_name_length_max + 1]) + b"A" * 40
    forged_command = one[:-9] + (1).to_bytes(4, "big") + long_name
    with pytest.raises(FrameError, match="validation"):
        wire.batch.decode_command(forged_command)


def test_every_truncation_refused_on_every_read_path() -> None:
    batch = (COMMAND, m.Command(client_id="r", request_no=8, kind=m.CommandKind.read))
    frame = frame_of(accept(batch))
    body = frame[wire.HEADER_SIZE :]
    record = wire.encode_record(
        m.AcceptRecord(entry=m.LogEntry(slot=1, ballot=BALLOT, batch=batch))
    )
    data = uncached(batch)
    reply = frame_of(
        m.ClientReply(
            client_id="c",
            request_no=1,
            outcome=m.Outcome(
                results=(m.TransferResult(ok=True), m.TransferResult(ok=False, reason="no"))
            ),
            leader="n1",
        )
    )
    for cut in range(len(body)):
        refused(reframe_body(frame, body[:cut]))
    for cut in range(len(reply) - wire.HEADER_SIZE):
        refused(reframe_body(reply, reply[wire.HEADER_SIZE : wire.HEADER_SIZE + cut]))
    for cut in range(len(record)):
        with pytest.raises(FrameError):
            wire.decode_record(record[:cut])
    for cut in range(len(data)):
        with pytest.raises(FrameError):
            read_batch(io.BytesIO(data[:cut]))


def test_unknown_kind_and_flags_refused() -> None:
    data = uncached((COMMAND,))
    kind_at = 4 + 1 + 2 + 8 + 8  # count, client id, request number, session
    assert data[kind_at] == m.CommandKind.transfer
    with pytest.raises(FrameError, match="CommandKind"):
        decode_batch(data[:kind_at] + b"\x05" + data[kind_at + 1 :])
    reply = frame_of(
        m.ClientReply(
            client_id="c",
            request_no=1,
            outcome=m.Outcome(results=(m.TransferResult(ok=True),)),
            leader=None,
        )
    )
    body = reply[wire.HEADER_SIZE :]
    ok_at = 1 + 1 + 8 + 4
    refused(reframe_body(reply, body[:ok_at] + b"\x02" + body[ok_at + 1 :]), "0 or 1")


@pytest.mark.parametrize(
    "batch",
    [
        (COMMAND,) * (constants.batch_commands_max + 1),
        (
            m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(TRANSFER,) * (constants.transfers_per_request_max + 1),
            ),
        ),
        (m.Command(client_id="c" * 65, request_no=1, kind=m.CommandKind.read),),
        (m.Command(client_id="c", request_no=-1, kind=m.CommandKind.read),),
        (m.Command(client_id="c", request_no=2**64, kind=m.CommandKind.read),),
        (m.Command(client_id="c", request_no=1, kind=9),),  # type: ignore[arg-type]
        (m.Command(client_id="\udc80", request_no=1, kind=m.CommandKind.read),),
        (
            m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender="A" * 33, receiver="B", amount=1),),
            ),
        ),
        (
            m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender="A", receiver="é" * 17, amount=1),),
            ),
        ),
        (
            m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender="A", receiver="B", amount=2**63),),
            ),
        ),
        (
            m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender="A", receiver="B", amount=1.5),),
            ),
        ),  # type: ignore[arg-type]
        (
            m.Command(
                client_id="c",
                request_no=1,
                kind=m.CommandKind.transfer,
                transfers=(m.Transfer(sender=b"A", receiver="B", amount=1),),
            ),
        ),  # type: ignore[arg-type]
        (m.Command(client_id="c", request_no=1, kind=m.CommandKind.transfer, transfers=[None]),),  # type: ignore[list-item]
        (TRANSFER,),  # type: ignore[arg-type]
    ],
    ids=lambda batch: f"{len(batch)} commands",
)
def test_values_that_do_not_fit_are_a_value_error_on_every_encode_path(batch: m.Batch) -> None:
    with pytest.raises(ValueError):
        build_value(BatchReference, batch, "reference")  # the declaration refuses it too
    with pytest.raises(ValueError):
        uncached(batch)
    with pytest.raises(ValueError):
        write_batch(batch, io.BytesIO())
    with pytest.raises(ValueError):
        frame_of(accept(batch))
    with pytest.raises(ValueError):
        wire.encode_record(m.AcceptRecord(entry=m.LogEntry(slot=1, ballot=BALLOT, batch=batch)))


def test_a_decoded_batch_re_encodes_to_the_bytes_it_came_from() -> None:
    batch = tuple(
        m.Command(
            client_id=f"c{i}", request_no=i, kind=m.CommandKind.transfer, transfers=(TRANSFER,) * 3
        )
        for i in range(10)
    )
    frame = frame_of(accept(batch))
    wire.batch.forget_recent()
    _, message = wire.decode_frame(frame, cluster_id=1)
    assert isinstance(message, m.Accept)
    record = m.AcceptRecord(entry=m.LogEntry(slot=9, ballot=BALLOT, batch=message.batch))
    remembered = wire.encode_record(record)
    wire.batch.forget_recent()
    assert remembered == wire.encode_record(record) == encode_record_reference(record)


def test_bytes_that_were_only_encoded_are_decoded_for_real() -> None:
    """The WAL checks a record by decoding what was just encoded: that must be a
    real decode, not the encoder's own value handed back."""
    batch = tuple(
        m.Command(
            client_id=f"c{i}", request_no=i, kind=m.CommandKind.transfer, transfers=(TRANSFER,) * 4
        )
        for i in range(8)
    )
    wire.batch.forget_recent()
    record = m.AcceptRecord(entry=m.LogEntry(slot=3, ballot=BALLOT, batch=batch))
    decoded = wire.decode_record(wire.encode_record(record))
    assert isinstance(decoded, m.AcceptRecord)
    assert decoded == record and decoded.entry.batch is not batch
    again = wire.decode_record(wire.encode_record(record))  # now the same bytes were decoded
    assert isinstance(again, m.AcceptRecord) and again.entry.batch is decoded.entry.batch


def test_a_re_sent_accept_is_decoded_once() -> None:
    batch = tuple(
        m.Command(
            client_id=f"c{i}", request_no=i, kind=m.CommandKind.transfer, transfers=(TRANSFER,) * 4
        )
        for i in range(8)
    )
    frame = frame_of(accept(batch))
    wire.batch.forget_recent()
    first = wire.decode_frame(frame, cluster_id=1)[1]
    second = wire.decode_frame(frame, cluster_id=1)[1]
    assert isinstance(first, m.Accept) and isinstance(second, m.Accept)
    assert first.batch == batch and second.batch is first.batch
    changed = bytearray(frame[wire.HEADER_SIZE :])
    changed[-6] ^= 1  # another amount (before no accounts, no owner): decoded afresh
    third = wire.decode_frame(reframe_body(frame, bytes(changed)), cluster_id=1)[1]
    assert isinstance(third, m.Accept) and third.batch != first.batch


def test_remembered_batches_are_bounded() -> None:
    recent = wire.batch._RecentEncodings()
    for i in range(recent.entries_max + 50):
        batch = (
            m.Command(
                client_id=f"c{i}",
                request_no=i,
                kind=m.CommandKind.transfer,
                transfers=(TRANSFER,) * 10,
            ),
        )
        recent.remember_decoded(batch, wire.batch._pack_batch(batch)[0])
    assert len(recent._by_id) == recent.entries_max
    assert len(recent._by_bytes) == recent.entries_max


def test_a_batch_of_client_requests_is_their_bytes_and_counts_as_decoded() -> None:
    """The leader's batch of its clients' commands is encoded by joining the
    bytes each request's command came in, exactly what packing gives, and its
    WAL record's read-back check finds it decoded; a batch holding any command
    that did not come so is packed and decoded for real."""
    commands = tuple(
        m.Command(
            client_id=f"c{i}", request_no=i, kind=m.CommandKind.transfer, transfers=(TRANSFER,) * 2
        )
        for i in range(6)
    )
    wire.batch.forget_recent()
    arrived = []
    for command in commands:
        frame = wire.encode_frame(m.ClientRequest(command=command), cluster_id=1, sender=0)
        _, request = wire.decode_frame(frame, cluster_id=1)
        assert isinstance(request, m.ClientRequest) and request.command == command
        arrived.append(request.command)
    batch = tuple(arrived)
    data = wire.batch.encode_batch(batch)
    assert data == build_value(BatchReference, list(batch), "reference")
    assert wire.batch.batch_of_bytes(data) is batch  # no decode: these bytes came from the wire
    record = m.AcceptRecord(entry=m.LogEntry(slot=4, ballot=BALLOT, batch=batch))
    decoded = wire.decode_record(wire.encode_record(record))
    assert isinstance(decoded, m.AcceptRecord) and decoded.entry.batch is batch
    mixed = (*arrived[:3], commands[3])  # the last one was never decoded
    data = wire.batch.encode_batch(mixed)
    again = wire.batch.batch_of_bytes(data)
    assert again == mixed and again is not mixed


def test_remembered_commands_are_bounded() -> None:
    recent = wire.batch._RecentCommands()
    for i in range(recent.entries_max + 50):
        command = m.Command(
            client_id=f"c{i}", request_no=i, kind=m.CommandKind.transfer, transfers=(TRANSFER,)
        )
        recent.remember(command, wire.batch.pack_command(command))
    assert len(recent._by_id) == recent.entries_max
    assert recent._bytes == sum(len(data) for _, data in recent._by_id.values())
