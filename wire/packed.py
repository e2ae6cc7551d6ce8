"""Hand-written `struct` codecs for the bodies on the hot path.

Every body and record stays declared with construct (`bodies.py`,
`records.py`, `values.py`): that declaration is the format. The messages that
flow for every request or every slot (client requests and replies, Accept,
Accepted, AcceptMany, AcceptedMany, Heartbeat, HeartbeatAck, the WAL's
records, and snapshots)
are also packed here by hand, because construct's interpreted parsing costs an
order of magnitude more per body and per transfer (docs/performance.md).
`tests/test_batch_codec.py` proves with hypothesis that each packer writes
exactly the bytes of its construct declaration, decodes them to an equal
value, and refuses what construct refuses.

A packer's `encode(value) -> bytes` raises ValueError for a value the format
cannot carry; its `decode(data) -> value` must consume `data` exactly and
raises FrameError for anything else (`what` names the body in the message, as
`strict.parse_exact` does).

Outcomes (one result per transfer) are packed here too, and `Outcome_` lets
the construct declaration of a snapshot's client table use the packer; whole
snapshots have a packer of their own (`SNAPSHOT_PACKER`, used by records.py).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import IO, Any

import attrs
from construct import Construct, SizeofError

from ledgerpaxos import constants
from ledgerpaxos.core import messages as m

from .batch import (
    _encode_text,
    _malformed,
    _pack_text,
    _sequence_length,
    _unpack_text,
    batch_at,
    batch_of_bytes,
    encode_batch,
    pack_command,
    remember_command,
    unpack_command,
)
from .errors import FrameError

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_BALLOT_SLOT = struct.Struct(">QBQ")  # Accepted
_BALLOT_2_SLOTS = struct.Struct(">QBQQ")  # _pack_2_slots_digest without its digest
_BALLOT_3_SLOTS = struct.Struct(">QBQQQ")  # Accept without its batch
_BALLOT = struct.Struct(">QB")  # AcceptedMany before its votes
_SLOT_BALLOT = struct.Struct(">QQB")  # a log entry before its batch

_reason_max = constants.reason_length_max
_name_max = constants.account_name_length_max
_client_id_max = constants.client_id_length_max
_node_id_max = constants.node_id_length_max
_results_max = constants.transfers_per_request_max
_balances_max = constants.message_size_max  # fields.count_max_default
_digest_max = 0xFF
_many_max = constants.accept_many_slots_max
_replicas_max = constants.replicas_max


@attrs.frozen
class Packer:
    """The struct codec of one body (or record) type."""

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes | bytearray | memoryview], Any]  # `data` must be consumed exactly


def _exactly(what: str, unpack: Callable[[bytes, int], tuple[Any, int]]) -> Callable[[Any], Any]:
    """A decode function: unpack from offset 0, require the end, FrameError otherwise."""

    def decode(data: Any) -> Any:
        if not isinstance(data, bytes):
            data = bytes(data)  # a memoryview of a receive buffer: never keep it
        try:
            value, end = unpack(data, 0)
        except FrameError as error:
            raise FrameError(f"malformed {what}: {error}") from None
        except (struct.error, IndexError, UnicodeDecodeError) as error:
            raise _malformed(f"malformed {what}", error) from None
        if end != len(data):
            raise FrameError(f"malformed {what}: {len(data) - end} trailing bytes")
        return value

    return decode


def _encoder(what: str, pack: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """An encode function that reports every misfit as ValueError."""

    def encode(value: Any) -> bytes:
        try:
            return pack(value)
        except (struct.error, OverflowError, AttributeError, TypeError) as error:
            raise ValueError(f"cannot encode {what}: {error}") from None

    return encode


def _check(value: Any, value_class: type) -> None:
    if not isinstance(value, value_class):
        raise ValueError(f"expected {value_class.__name__}, found {value!r}")


# ---------------------------------------------------------------- small values


def _pack_ballot(ballot: Any) -> tuple[int, int]:
    _check(ballot, m.Ballot)
    if not isinstance(ballot.node, int) or not 0 <= ballot.node <= _replicas_max:
        raise ValueError(f"ballot node {ballot.node!r} is not a node index")
    return ballot.round, ballot.node


def _ballot(round_: int, node: int) -> m.Ballot:
    if node > _replicas_max:
        raise FrameError(f"ballot node {node} failed validation (at most {_replicas_max})")
    return m.Ballot(round_, node)


def _flag(byte: int) -> bool:
    if byte == 0:
        return False
    if byte == 1:
        return True
    raise FrameError(f"flag byte must be 0 or 1, found {byte}")


def _pack_flag(value: Any) -> bytes:
    if not isinstance(value, bool):
        raise ValueError(f"expected a bool, found {value!r}")
    return b"\x01" if value else b"\x00"


def _pack_maybe_text(value: Any, length_max: int, what: str) -> bytes:
    if value is None:
        return b"\x00"
    return b"\x01" + _pack_text(value, length_max, what)


def _unpack_maybe_text(
    data: bytes, offset: int, length_max: int, what: str
) -> tuple[str | None, int]:
    if not _flag(data[offset]):
        return None, offset + 1
    return _unpack_text(data, offset + 1, length_max, what)


# ---------------------------------------------------------------- outcomes

_OK = m.TransferResult(ok=True)
_OK_BYTES = b"\x01\x00"
_failures: dict[tuple[bool, str | None], m.TransferResult] = {}
_failures_max = 1024


def _result(ok: bool, reason: str | None) -> m.TransferResult:
    """Results are immutable: share one object per distinct value (bounded)."""
    if ok and reason is None:
        return _OK
    key = (ok, reason)
    result = _failures.get(key)
    if result is None:
        result = m.TransferResult(ok=ok, reason=reason)
        if len(_failures) < _failures_max:
            _failures[key] = result
    return result


def _pack_outcome(outcome: Any, out: list[bytes]) -> None:
    _check(outcome, m.Outcome)
    results = outcome.results
    out.append(
        _U32.pack(_sequence_length(results, "results", _results_max, "transfers_per_request_max"))
    )
    append = out.append
    for result in results:
        if type(result) is m.TransferResult and result.ok is True and result.reason is None:
            append(_OK_BYTES)
            continue
        _check(result, m.TransferResult)
        append(_pack_flag(result.ok))
        append(_pack_maybe_text(result.reason, _reason_max, "reason"))
    append(_U64.pack(outcome.slot))
    append(_U32.pack(outcome.index))
    balances = outcome.balances
    if balances is None:
        append(b"\x00")
    else:
        append(b"\x01")
        _pack_balances(balances, out)
    append(_pack_flag(outcome.evicted))


# Rows are joined this many pieces at a time: one join of millions of pieces
# would hold the GIL for a tenth of a second, and a snapshot is encoded in a
# worker thread beside the replica's loop.
_pieces_joined_max = 8192


def _pack_balances(balances: Any, out: list[bytes]) -> None:
    out.append(_U32.pack(_sequence_length(balances, "balances", _balances_max, "the maximum")))
    pieces: list[bytes] = []
    append = pieces.append
    prefixes = _account_prefixes
    pack_balance = _I64.pack
    for pair in balances:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"expected a pair, found {pair!r}")
        name, balance = pair
        prefix = prefixes.get(name) if type(name) is str else None
        if prefix is None:
            prefix = _account_prefix(name)
        append(prefix)
        append(pack_balance(balance))
        if len(pieces) >= _pieces_joined_max:
            out.append(b"".join(pieces))
            pieces.clear()
    out.append(b"".join(pieces))


# Snapshots and reads carry every account, every time, under the same few
# names: their encoded forms are remembered (bounded; a pure function of the name).
_account_prefixes: dict[str, bytes] = {}  # name -> length byte + UTF-8
_account_names: dict[bytes, str] = {}  # UTF-8 -> name
_account_names_remembered_max = 65536


def _account_prefix(name: Any) -> bytes:
    data = _encode_text(name, _name_max, "account")
    if len(_account_prefixes) >= _account_names_remembered_max:
        _account_prefixes.clear()
    prefix = _account_prefixes[name] = bytes((len(data),)) + data
    return prefix


def _account_name(data: bytes) -> str:
    name = data.decode("utf-8")
    if len(_account_names) >= _account_names_remembered_max:
        _account_names.clear()
    _account_names[data] = name
    return name


def _unpack_balances(data: bytes, offset: int) -> tuple[tuple[tuple[str, int], ...], int]:
    (count,) = _U32.unpack_from(data, offset)
    if count > _balances_max:
        raise FrameError(f"balance count {count} failed validation")
    offset += 4
    pairs: list[tuple[str, int]] = []
    append = pairs.append
    unpack_balance = _I64.unpack_from
    names = _account_names
    for _ in range(count):
        length = data[offset]
        if length > _name_max:
            raise FrameError(f"account length {length} failed validation (at most {_name_max})")
        start = offset + 1
        offset = start + length
        raw = data[start:offset]
        account = names.get(raw) or _account_name(raw)
        (balance,) = unpack_balance(data, offset)  # struct.error when cut short
        offset += 8
        append((account, balance))
    return tuple(pairs), offset


def _unpack_count(data: bytes, offset: int, count_max: int, what: str) -> tuple[int, int]:
    """A u32 element count, refused above `count_max` before any element is read."""
    (count,) = _U32.unpack_from(data, offset)
    if count > count_max:
        raise FrameError(f"{what} count {count} failed validation (at most {count_max})")
    return count, offset + 4


def _unpack_outcome(data: bytes, offset: int) -> tuple[m.Outcome, int]:
    count, offset = _unpack_count(data, offset, _results_max, "result")
    results: list[m.TransferResult] = []
    append = results.append
    for _ in range(count):
        if data.startswith(_OK_BYTES, offset):
            append(_OK)
            offset += 2
            continue
        ok = _flag(data[offset])
        reason, offset = _unpack_maybe_text(data, offset + 1, _reason_max, "reason")
        append(_result(ok, reason))
    (slot,) = _U64.unpack_from(data, offset)
    (index,) = _U32.unpack_from(data, offset + 8)
    offset += 12
    balances: tuple[tuple[str, int], ...] | None = None
    present = _flag(data[offset])
    offset += 1
    if present:
        balances, offset = _unpack_balances(data, offset)
    evicted = _flag(data[offset])
    outcome = m.Outcome(
        results=tuple(results), balances=balances, slot=slot, index=index, evicted=evicted
    )
    return outcome, offset + 1


def _pack_outcome_alone(outcome: Any) -> bytes:
    out: list[bytes] = []
    _pack_outcome(outcome, out)
    return b"".join(out)


pack_outcome = _encoder("outcome", _pack_outcome_alone)
"""The encoding of one Outcome (ValueError if it does not fit)."""


class _OutcomeField(Construct):  # type: ignore[misc]  # construct is untyped
    """The construct field for an Outcome, packed by `_pack_outcome`."""

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> m.Outcome:
        if isinstance(stream, io.BytesIO):
            data, offset = stream.getvalue(), stream.tell()
        else:
            data, offset = stream.read(), 0
            stream.seek(-len(data), io.SEEK_CUR)
        try:
            outcome, end = _unpack_outcome(data, offset)
        except (struct.error, IndexError, UnicodeDecodeError) as error:
            raise _malformed("malformed outcome", error) from None
        stream.seek(end - offset, io.SEEK_CUR)
        return outcome

    def _build(self, obj: Any, stream: IO[bytes], context: Any, path: str) -> Any:
        stream.write(pack_outcome(obj))
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise SizeofError("an outcome has no fixed size", path=path)


Outcome_ = _OutcomeField()


def _pack_digest(value: Any, what: str) -> bytes:
    """A digest as the construct field `Digest` writes it: u8 length, the bytes."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{what}: expected bytes, found {value!r}")
    data = bytes(value)
    if len(data) > _digest_max:
        raise ValueError(f"{what} of {len(data)} bytes exceeds {_digest_max}")
    return bytes((len(data),)) + data


def _unpack_digest(data: bytes, offset: int, what: str) -> tuple[bytes, int]:
    length = data[offset]
    end = offset + 1 + length
    if end > len(data):
        raise FrameError(f"{what} truncated")
    return data[offset + 1 : end], end


# ---------------------------------------------------------------- message bodies


def _pack_client_request(message: Any) -> bytes:
    _check(message, m.ClientRequest)
    return pack_command(message.command)


def _unpack_client_request(data: bytes, offset: int) -> tuple[m.ClientRequest, int]:
    command, end = unpack_command(data, offset)
    # The leader puts it into a batch next: its bytes are that batch's (batch.py).
    remember_command(command, data[offset:end])
    return m.ClientRequest(command=command), end


def _pack_client_reply(message: Any) -> bytes:
    _check(message, m.ClientReply)
    out = [_pack_text(message.client_id, _client_id_max, "client id")]
    out.append(_U64.pack(message.request_no))
    _pack_outcome(message.outcome, out)
    out.append(_pack_maybe_text(message.leader, _node_id_max, "leader"))
    return b"".join(out)


def _unpack_client_reply(data: bytes, offset: int) -> tuple[m.ClientReply, int]:
    client_id, offset = _unpack_text(data, offset, _client_id_max, "client id")
    (request_no,) = _U64.unpack_from(data, offset)
    outcome, offset = _unpack_outcome(data, offset + 8)
    leader, offset = _unpack_maybe_text(data, offset, _node_id_max, "leader")
    reply = m.ClientReply(
        client_id=client_id, request_no=request_no, outcome=outcome, leader=leader
    )
    return reply, offset


def _pack_accept(message: Any) -> bytes:
    _check(message, m.Accept)
    round_, node = _pack_ballot(message.ballot)
    head = _BALLOT_3_SLOTS.pack(round_, node, message.slot, message.commit_slot, message.purge_slot)
    chain = _pack_digest(message.commit_chain, "commit chain")
    return head + chain + encode_batch(message.batch)


def _unpack_accept(data: bytes, offset: int) -> tuple[m.Accept, int]:
    round_, node, slot, commit_slot, purge_slot = _BALLOT_3_SLOTS.unpack_from(data, offset)
    ballot = _ballot(round_, node)
    chain, offset = _unpack_digest(data, offset + _BALLOT_3_SLOTS.size, "commit chain")
    # The batch is the rest of the body. A follower writes it to its WAL next,
    # and may get the same Accept again (a re-send): both find it remembered.
    batch = batch_of_bytes(data[offset:])
    accept = m.Accept(
        ballot=ballot,
        slot=slot,
        batch=batch,
        commit_slot=commit_slot,
        commit_chain=chain,
        purge_slot=purge_slot,
    )
    return accept, len(data)


def _pack_accepted(message: Any) -> bytes:
    _check(message, m.Accepted)
    head = _BALLOT_SLOT.pack(*_pack_ballot(message.ballot), message.slot)
    return head + _pack_digest(message.digest, "digest")


def _unpack_accepted(data: bytes, offset: int) -> tuple[m.Accepted, int]:
    round_, node, slot = _BALLOT_SLOT.unpack_from(data, offset)
    digest, end = _unpack_digest(data, offset + _BALLOT_SLOT.size, "digest")
    return m.Accepted(ballot=_ballot(round_, node), slot=slot, digest=digest), end


def _pack_2_slots_digest(ballot: Any, first: int, second: int, digest: Any, what: str) -> bytes:
    """A ballot, two slots and a digest: the layout of a Heartbeat (its commit
    point), of the head of an AcceptMany and of a HeartbeatAck."""
    round_, node = _pack_ballot(ballot)
    return _BALLOT_2_SLOTS.pack(round_, node, first, second) + _pack_digest(digest, what)


def _unpack_2_slots_digest(
    data: bytes, offset: int, what: str
) -> tuple[m.Ballot, int, int, bytes, int]:
    """(ballot, first slot, second slot, digest, the offset after them)."""
    round_, node, first, second = _BALLOT_2_SLOTS.unpack_from(data, offset)
    digest, end = _unpack_digest(data, offset + _BALLOT_2_SLOTS.size, what)
    return _ballot(round_, node), first, second, digest, end


def _pack_commit_point(message: Any) -> bytes:
    """Ballot, commit slot, purge slot and commit chain: a Heartbeat's whole
    body, and the head of an AcceptMany's."""
    return _pack_2_slots_digest(
        message.ballot,
        message.commit_slot,
        message.purge_slot,
        message.commit_chain,
        "commit chain",
    )


def _unpack_commit_point(data: bytes, offset: int) -> tuple[m.Ballot, int, int, bytes, int]:
    """(ballot, commit slot, purge slot, commit chain, the offset after them)."""
    return _unpack_2_slots_digest(data, offset, "commit chain")


def _pack_accept_many(message: Any) -> bytes:
    _check(message, m.AcceptMany)
    count = _sequence_length(message.entries, "entries", _many_max, "accept_many_slots_max")
    out = [_pack_commit_point(message), _U32.pack(count)]
    for entry in message.entries:
        _check(entry, m.LogEntry)
        out.append(_SLOT_BALLOT.pack(entry.slot, *_pack_ballot(entry.ballot)))
        out.append(encode_batch(entry.batch))
    return b"".join(out)


def _unpack_accept_many(data: bytes, offset: int) -> tuple[m.AcceptMany, int]:
    ballot, commit_slot, purge_slot, chain, offset = _unpack_commit_point(data, offset)
    count, offset = _unpack_count(data, offset, _many_max, "entry")
    entries = []
    for _ in range(count):
        slot, entry_round, entry_node = _SLOT_BALLOT.unpack_from(data, offset)
        batch, offset = batch_at(data, offset + _SLOT_BALLOT.size)
        entries.append(m.LogEntry(slot=slot, ballot=_ballot(entry_round, entry_node), batch=batch))
    many = m.AcceptMany(
        ballot=ballot,
        entries=tuple(entries),
        commit_slot=commit_slot,
        commit_chain=chain,
        purge_slot=purge_slot,
    )
    return many, offset


def _pack_accepted_many(message: Any) -> bytes:
    _check(message, m.AcceptedMany)
    count = _sequence_length(message.votes, "votes", _many_max, "accept_many_slots_max")
    out = [_BALLOT.pack(*_pack_ballot(message.ballot)), _U32.pack(count)]
    for vote in message.votes:
        if not isinstance(vote, tuple) or len(vote) != 2:
            raise ValueError(f"a vote is a (slot, digest) pair, found {vote!r}")
        slot, digest = vote
        out.append(_U64.pack(slot))
        out.append(_pack_digest(digest, "digest"))
    return b"".join(out)


def _unpack_accepted_many(data: bytes, offset: int) -> tuple[m.AcceptedMany, int]:
    round_, node = _BALLOT.unpack_from(data, offset)
    ballot = _ballot(round_, node)
    count, offset = _unpack_count(data, offset + _BALLOT.size, _many_max, "vote")
    votes = []
    for _ in range(count):
        (slot,) = _U64.unpack_from(data, offset)
        digest, offset = _unpack_digest(data, offset + 8, "digest")
        votes.append((slot, digest))
    return m.AcceptedMany(ballot=ballot, votes=tuple(votes)), offset


def _pack_heartbeat(message: Any) -> bytes:
    _check(message, m.Heartbeat)
    return _pack_commit_point(message)


def _unpack_heartbeat(data: bytes, offset: int) -> tuple[m.Heartbeat, int]:
    ballot, commit_slot, purge_slot, chain, end = _unpack_commit_point(data, offset)
    heartbeat = m.Heartbeat(
        ballot=ballot,
        commit_slot=commit_slot,
        commit_chain=chain,
        purge_slot=purge_slot,
    )
    return heartbeat, end


def _pack_heartbeat_ack(message: Any) -> bytes:
    _check(message, m.HeartbeatAck)
    return _pack_2_slots_digest(
        message.ballot,
        message.executed_slot,
        message.checkpoint_slot,
        message.checkpoint_digest,
        "checkpoint digest",
    )


def _unpack_heartbeat_ack(data: bytes, offset: int) -> tuple[m.HeartbeatAck, int]:
    ballot, executed_slot, checkpoint_slot, digest, end = _unpack_2_slots_digest(
        data, offset, "checkpoint digest"
    )
    ack = m.HeartbeatAck(
        ballot=ballot,
        executed_slot=executed_slot,
        checkpoint_slot=checkpoint_slot,
        checkpoint_digest=digest,
    )
    return ack, end


def _body(message_class: type, pack: Callable[[Any], bytes], unpack: Any) -> Packer:
    what = f"{message_class.__name__} body"
    return Packer(encode=_encoder(what, pack), decode=_exactly(what, unpack))


BODY_PACKERS: dict[type, Packer] = {
    m.ClientRequest: _body(m.ClientRequest, _pack_client_request, _unpack_client_request),
    m.ClientReply: _body(m.ClientReply, _pack_client_reply, _unpack_client_reply),
    m.Accept: _body(m.Accept, _pack_accept, _unpack_accept),
    m.Accepted: _body(m.Accepted, _pack_accepted, _unpack_accepted),
    m.AcceptMany: _body(m.AcceptMany, _pack_accept_many, _unpack_accept_many),
    m.AcceptedMany: _body(m.AcceptedMany, _pack_accepted_many, _unpack_accepted_many),
    m.Heartbeat: _body(m.Heartbeat, _pack_heartbeat, _unpack_heartbeat),
    m.HeartbeatAck: _body(m.HeartbeatAck, _pack_heartbeat_ack, _unpack_heartbeat_ack),
}
"""Message class -> its struct packer; the other bodies go through construct."""

# ---------------------------------------------------------------- snapshots

_clients_max = constants.message_size_max  # fields.count_max_default


def _pack_snapshot(snapshot: Any) -> bytes:
    _check(snapshot, m.Snapshot)
    out = [_U64.pack(snapshot.slot)]
    _pack_balances(snapshot.balances, out)
    opened = snapshot.opened
    out.append(_U32.pack(_sequence_length(opened, "opened", _clients_max, "the maximum")))
    pieces: list[bytes] = []
    for row in opened:
        if not isinstance(row, tuple) or len(row) != 3:
            raise ValueError(f"expected (account, owner, balance), found {row!r}")
        name, owner, balance = row
        pieces.append(_pack_text(name, _name_max, "account"))
        pieces.append(_pack_text(owner, _client_id_max, "owner"))
        pieces.append(_I64.pack(balance))
        if len(pieces) >= _pieces_joined_max:
            out.append(b"".join(pieces))
            pieces.clear()
    out.append(b"".join(pieces))
    clients = snapshot.clients
    out.append(_U32.pack(_sequence_length(clients, "clients", _clients_max, "the maximum")))
    for entry in clients:
        _check(entry, m.ClientEntry)
        out.append(_pack_text(entry.client_id, _client_id_max, "client id"))
        out.append(_U64.pack(entry.request_no))
        _pack_outcome(entry.outcome, out)
        out.append(_U64.pack(entry.session))
    out.append(_pack_digest(snapshot.digest, "digest"))
    out.append(_pack_digest(snapshot.chain, "chain"))
    return b"".join(out)


def _unpack_snapshot(data: bytes, offset: int) -> tuple[m.Snapshot, int]:
    (slot,) = _U64.unpack_from(data, offset)
    balances, offset = _unpack_balances(data, offset + 8)
    (count,) = _U32.unpack_from(data, offset)
    if count > _clients_max:
        raise FrameError(f"opened count {count} failed validation")
    offset += 4
    opened = []
    for _ in range(count):
        name, offset = _unpack_text(data, offset, _name_max, "account")
        owner, offset = _unpack_text(data, offset, _client_id_max, "owner")
        (balance,) = _I64.unpack_from(data, offset)
        offset += 8
        opened.append((name, owner, balance))
    (count,) = _U32.unpack_from(data, offset)
    if count > _clients_max:
        raise FrameError(f"client count {count} failed validation")
    offset += 4
    clients = []
    for _ in range(count):
        client_id, offset = _unpack_text(data, offset, _client_id_max, "client id")
        (request_no,) = _U64.unpack_from(data, offset)
        outcome, offset = _unpack_outcome(data, offset + 8)
        (session,) = _U64.unpack_from(data, offset)
        offset += 8
        clients.append(
            m.ClientEntry(
                client_id=client_id, request_no=request_no, outcome=outcome, session=session
            )
        )
    digest, offset = _unpack_digest(data, offset, "digest")
    chain, end = _unpack_digest(data, offset, "chain")
    snapshot = m.Snapshot(
        slot=slot,
        balances=balances,
        opened=tuple(opened),
        clients=tuple(clients),
        digest=digest,
        chain=chain,
    )
    return snapshot, end


SNAPSHOT_PACKER = Packer(
    encode=_encoder("snapshot", _pack_snapshot), decode=_exactly("snapshot", _unpack_snapshot)
)

# ---------------------------------------------------------------- WAL records

# Record type bytes, as records.RecordType numbers them (checked there at import).
record_type_promise = 1
record_type_accept = 2
record_type_commit = 3

_RECORD_BALLOT = struct.Struct(">BQB")
_RECORD_COMMIT = struct.Struct(">BQ")
_RECORD_ACCEPT_HEAD = struct.Struct(">BQQB")  # type, slot, ballot round, ballot node


def _pack_record(record: Any) -> bytes:
    if type(record) is m.AcceptRecord:
        entry = record.entry
        _check(entry, m.LogEntry)
        round_, node = _pack_ballot(entry.ballot)
        head = _RECORD_ACCEPT_HEAD.pack(record_type_accept, entry.slot, round_, node)
        return head + encode_batch(entry.batch)
    if type(record) is m.CommitRecord:
        return _RECORD_COMMIT.pack(record_type_commit, record.commit_slot)
    if type(record) is m.PromiseRecord:
        return _RECORD_BALLOT.pack(record_type_promise, *_pack_ballot(record.ballot))
    raise ValueError(f"not a WAL record: {record!r}")


def _unpack_record(data: bytes, offset: int) -> tuple[m.WalRecord, int]:
    record_type = data[offset]
    if record_type == record_type_accept:
        _, slot, round_, node = _RECORD_ACCEPT_HEAD.unpack_from(data, offset)
        ballot = _ballot(round_, node)
        # The batch is the rest of the record; the same bytes decode to the same
        # batch, so the WAL's read-back checks reuse a recent decode of them.
        batch = batch_of_bytes(data[offset + _RECORD_ACCEPT_HEAD.size :])
        return m.AcceptRecord(entry=m.LogEntry(slot=slot, ballot=ballot, batch=batch)), len(data)
    if record_type == record_type_commit:
        _, commit_slot = _RECORD_COMMIT.unpack_from(data, offset)
        return m.CommitRecord(commit_slot=commit_slot), offset + _RECORD_COMMIT.size
    if record_type == record_type_promise:
        _, round_, node = _RECORD_BALLOT.unpack_from(data, offset)
        return m.PromiseRecord(ballot=_ballot(round_, node)), offset + _RECORD_BALLOT.size
    raise FrameError(f"unknown RecordType value {record_type}")


RECORD_PACKER = Packer(
    encode=_encoder("WAL record", _pack_record), decode=_exactly("WAL record", _unpack_record)
)
