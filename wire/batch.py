"""The codec of a slot's value: a batch of client commands, each with its transfers.

This is the hot path of the format: every Accept, NewView, Promise, catch-up,
client request and WAL accept record carries commands, and a batch holds up to
`batch_transfers_max` transfers. So it is declared with construct (below, the
reference: `TransferField`, `CommandField`, `BatchReference`) but packed and
unpacked with hand-written `struct` code, which is about 30 times faster.
`tests/test_batch_codec.py` proves with hypothesis that the two give exactly
the same bytes, decode them to equal values, and refuse the same malformed
input.

Layout (big-endian), as the construct declaration says:

    batch     u32 command count (<= batch_commands_max), then the commands
    command   u8 length + UTF-8 client id (<= client_id_length_max bytes)
              u64 request number
              u64 session (the client's, for transfers and openings; else 0)
              u8  kind (CommandKind)
              u32 transfer count (<= transfers_per_request_max), then the transfers
              u32 account count (<= accounts_per_request_max), then each
                  account as u8 length + UTF-8 (reads and openings)
              u8 length + UTF-8 owner (openings; <= client_id_length_max bytes)
    transfer  u8 length + UTF-8 sender (<= account_name_length_max bytes)
              u8 length + UTF-8 receiver
              i64 amount

A field a kind does not use is empty on the wire and ignored by the ledger.

The strictness of the construct fields is kept: counts and lengths are
checked before the elements, UTF-8 is strict, an unknown kind is refused, and
`read_batch` / `decode_batch` raise `FrameError` for anything malformed
(including truncation); `encode_batch` raises `ValueError` for a value the
format cannot carry (wrong type, string too long, integer out of range, too
many elements).

A few recent batches are remembered (`_recent`, see `_RecentEncodings`): by
identity, so that the same batch object is encoded once (the leader's WAL and
every follower's Accept); and by the bytes they were decoded from, so that the
same bytes are decoded once (a re-sent Accept, the WAL's read-back checks).
Values are immutable and both functions are pure, so this changes no result.
"""

from __future__ import annotations

import io
import struct
import threading
from collections.abc import Callable
from typing import IO, Any

import attrs
from construct import Construct, SizeofError, Struct

from ledgerpaxos import constants
from ledgerpaxos.core.messages import Batch, Command, CommandKind, Transfer

from .errors import FrameError
from .fields import (
    I64,
    U8,
    U64,
    AccountName,
    AttrsAdapter,
    BoundedArray,
    ClientId,
    RequestNo,
    StrictEnum,
)

# ---------------------------------------------------------------- the reference declaration

TransferField = AttrsAdapter(
    Transfer,
    Struct(
        "sender" / AccountName,
        "receiver" / AccountName,
        "amount" / I64,
    ),
)

CommandField = AttrsAdapter(
    Command,
    Struct(
        "client_id" / ClientId,
        "request_no" / RequestNo,
        "session" / U64,
        "kind" / StrictEnum(U8, CommandKind),
        "transfers" / BoundedArray(TransferField, constants.transfers_per_request_max),
        "accounts" / BoundedArray(AccountName, constants.accounts_per_request_max),
        "owner" / ClientId,
    ),
)

BatchReference = BoundedArray(CommandField, constants.batch_commands_max)
"""What the struct packer below must agree with, byte for byte (tests only)."""

# ---------------------------------------------------------------- struct packing

_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_COMMAND_TAIL = struct.Struct(">QQBI")  # request_no, session, kind, transfer count
_READ_TAIL = struct.Struct(">QQB")
_KINDS = {int(kind): kind for kind in CommandKind}

_name_max = constants.account_name_length_max
_client_id_max = constants.client_id_length_max
_transfers_max = constants.transfers_per_request_max
_accounts_max = constants.accounts_per_request_max
_NO_ACCOUNTS_NO_OWNER = b"\x00\x00\x00\x00\x00"
_commands_max = constants.batch_commands_max

# One Struct per pair of name lengths: a transfer is one pack() call.
_transfer_structs: dict[tuple[int, int], struct.Struct] = {}


def _transfer_struct(sender_length: int, receiver_length: int) -> struct.Struct:
    key = (sender_length, receiver_length)
    packer = _transfer_structs.get(key)
    if packer is None:
        packer = struct.Struct(f">B{sender_length}sB{receiver_length}sq")
        _transfer_structs[key] = packer  # at most (name max + 1)^2 of them
    return packer


def _sequence_length(value: Any, what: str, length_max: int, limit: str) -> int:
    """The length of a tuple (or list) field; ValueError if it is neither or too long."""
    if not isinstance(value, tuple | list):
        raise ValueError(f"{what}: expected a tuple, found {value!r}")
    if len(value) > length_max:
        raise ValueError(f"{len(value)} {what} exceed {limit}")
    return len(value)


def _encode_text(value: Any, length_max: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a str, found {value!r}")
    data = value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    if len(data) > length_max:
        raise ValueError(f"{what} of {len(data)} bytes exceeds its maximum of {length_max}")
    return data


def _pack_text(value: Any, length_max: int, what: str) -> bytes:
    """A string field: u8 length + UTF-8."""
    data = _encode_text(value, length_max, what)
    return bytes((len(data),)) + data


def _unpack_text(data: bytes, offset: int, length_max: int, what: str) -> tuple[str, int]:
    """The string field at `offset` and the offset after it."""
    length = data[offset]
    if length > length_max:
        raise FrameError(f"{what} length {length} failed validation (at most {length_max})")
    start = offset + 1
    end = start + length
    if end > len(data):
        raise FrameError(f"{what} truncated")
    return data[start:end].decode("utf-8"), end


def _pack_command(command: Any, out: list[bytes]) -> None:
    if not isinstance(command, Command):
        raise ValueError(f"expected Command, found {command!r}")
    client_id = _encode_text(command.client_id, _client_id_max, "client id")
    transfers = command.transfers
    _sequence_length(transfers, "transfers", _transfers_max, "transfers_per_request_max")
    kind = int(CommandKind(command.kind))  # ValueError for a kind not in the enum
    try:
        tail = _COMMAND_TAIL.pack(command.request_no, command.session, kind, len(transfers))
    except struct.error as error:
        raise ValueError(
            f"request number {command.request_no!r} or session {command.session!r}: {error}"
        ) from None
    out.append(bytes((len(client_id),)))
    out.append(client_id)
    out.append(tail)
    append = out.append
    for transfer in transfers:
        if not isinstance(transfer, Transfer):
            raise ValueError(f"expected Transfer, found {transfer!r}")
        sender = _encode_text(transfer.sender, _name_max, "sender")
        receiver = _encode_text(transfer.receiver, _name_max, "receiver")
        try:
            append(
                _transfer_struct(len(sender), len(receiver)).pack(
                    len(sender), sender, len(receiver), receiver, transfer.amount
                )
            )
        except struct.error as error:
            raise ValueError(f"amount {transfer.amount!r}: {error}") from None
    accounts = command.accounts
    owner = command.owner
    if not accounts and owner == "":
        append(_NO_ACCOUNTS_NO_OWNER)
        return
    _sequence_length(accounts, "accounts", _accounts_max, "accounts_per_request_max")
    append(_U32.pack(len(accounts)))
    for account in accounts:
        append(_pack_text(account, _name_max, "account"))
    append(_pack_text(owner, _client_id_max, "owner"))


def pack_command(command: Command) -> bytes:
    """The encoding of one command (ValueError if it does not fit)."""
    out: list[bytes] = []
    _pack_command(command, out)
    return b"".join(out)


def _pack_batch(batch: Any) -> tuple[bytes, bool]:
    """The batch's bytes, and whether every command in it came from bytes
    it was decoded from (`_recent_commands`): then so did the whole."""
    if not isinstance(batch, tuple | list):
        raise ValueError(f"expected a tuple of commands, found {batch!r}")
    if len(batch) > _commands_max:
        raise ValueError(f"{len(batch)} commands exceed batch_commands_max ({_commands_max})")
    out = [_U32.pack(len(batch))]
    decoded = True
    known = _recent_commands.get
    for command in batch:
        data = known(command)
        if data is None:
            decoded = False
            _pack_command(command, out)
        else:
            out.append(data)
    return b"".join(out), decoded


# ---------------------------------------------------------------- struct unpacking


def slot_setters(value_class: type) -> tuple[Callable[..., Any], ...]:
    """The slot setters of a plain frozen attrs class, in field order.

    Decoding builds the values it makes by the thousand (transfers, results)
    with `object.__new__` and these setters: about half the cost of the
    attrs `__init__`, which goes through `object.__setattr__` per field. The
    result is the same frozen, equal, hashable value. Only allowed for a
    class whose `__init__` would do nothing else: checked here, at import.
    """
    fields = attrs.fields(value_class)
    plain = all(
        f.validator is None and f.converter is None and f.init and f.alias == f.name for f in fields
    )
    hooks = any(
        hasattr(value_class, hook)
        for hook in ("__attrs_pre_init__", "__attrs_post_init__", "__attrs_init_subclass__")
    )
    if not plain or hooks or "__slots__" not in value_class.__dict__:
        raise TypeError(f"{value_class.__name__} is not a plain slotted attrs class")
    return tuple(value_class.__dict__[f.name].__set__ for f in fields)


_new = object.__new__
_set_sender, _set_receiver, _set_amount = slot_setters(Transfer)
assert [f.name for f in attrs.fields(Transfer)] == ["sender", "receiver", "amount"]
(
    _set_client_id,
    _set_request_no,
    _set_kind,
    _set_session,
    _set_transfers,
    _set_accounts,
    _set_owner,
) = slot_setters(Command)
assert [f.name for f in attrs.fields(Command)] == [
    "client_id",
    "request_no",
    "kind",
    "session",
    "transfers",
    "accounts",
    "owner",
]


def _malformed(what: str, error: Exception) -> FrameError:
    if isinstance(error, UnicodeDecodeError):
        return FrameError(f"{what}: invalid UTF-8: {error}")
    if isinstance(error, struct.error | IndexError):
        return FrameError(f"{what}: truncated")
    return FrameError(f"{what}: {error}")


def unpack_command(data: bytes, offset: int) -> tuple[Command, int]:
    """The command at `offset` of `data` and the offset after it.

    Raises FrameError, or IndexError/struct.error/UnicodeDecodeError for
    truncated or bad bytes (the public entry points turn those into FrameError).
    """
    length = data[offset]
    if length > _client_id_max:
        raise FrameError(f"client id length {length} failed validation (at most {_client_id_max})")
    start = offset + 1
    offset = start + length
    client_id = data[start:offset].decode("utf-8")
    request_no, session, kind_byte = _READ_TAIL.unpack_from(data, offset)
    kind = _KINDS.get(kind_byte)
    if kind is None:
        raise FrameError(f"unknown CommandKind value {kind_byte}")
    (count,) = _U32.unpack_from(data, offset + 17)
    if count > _transfers_max:
        raise FrameError(f"transfer count {count} failed validation (at most {_transfers_max})")
    offset += 21
    transfers: list[Transfer] = []
    append = transfers.append
    unpack_amount = _I64.unpack_from
    new, set_sender, set_receiver, set_amount = _new, _set_sender, _set_receiver, _set_amount
    for _ in range(count):
        length = data[offset]
        if length > _name_max:
            raise FrameError(f"sender length {length} failed validation (at most {_name_max})")
        start = offset + 1
        offset = start + length
        sender = data[start:offset].decode()  # strict UTF-8
        length = data[offset]  # IndexError when the sender was cut short
        if length > _name_max:
            raise FrameError(f"receiver length {length} failed validation (at most {_name_max})")
        start = offset + 1
        offset = start + length
        receiver = data[start:offset].decode()
        # struct.error when the receiver or the amount was cut short
        (amount,) = unpack_amount(data, offset)
        offset += 8
        transfer = new(Transfer)  # Transfer(sender=..., receiver=..., amount=...), see slot_setters
        set_sender(transfer, sender)
        set_receiver(transfer, receiver)
        set_amount(transfer, amount)
        append(transfer)
    accounts: tuple[str, ...] = ()
    owner = ""
    if data.startswith(_NO_ACCOUNTS_NO_OWNER, offset):
        offset += 5
    else:
        (count,) = _U32.unpack_from(data, offset)
        if count > _accounts_max:
            raise FrameError(f"account count {count} failed validation (at most {_accounts_max})")
        offset += 4
        names = []
        for _ in range(count):
            name, offset = _unpack_text(data, offset, _name_max, "account")
            names.append(name)
        accounts = tuple(names)
        owner, offset = _unpack_text(data, offset, _client_id_max, "owner")
    command = new(Command)  # Command(client_id=..., ...), see slot_setters
    _set_client_id(command, client_id)
    _set_request_no(command, request_no)
    _set_kind(command, kind)
    _set_session(command, session)
    _set_transfers(command, tuple(transfers))
    _set_accounts(command, accounts)
    _set_owner(command, owner)
    return command, offset


def unpack_batch(data: bytes, offset: int) -> tuple[Batch, int]:
    """The batch at `offset` of `data` and the offset after it (errors as unpack_command)."""
    (count,) = _U32.unpack_from(data, offset)
    if count > _commands_max:
        raise FrameError(f"command count {count} failed validation (at most {_commands_max})")
    offset += 4
    commands = []
    for _ in range(count):
        command, offset = unpack_command(data, offset)
        commands.append(command)
    return tuple(commands), offset


# ---------------------------------------------------------------- recent encodings


class _BytesByIdentity:
    """Bytes remembered for the very objects they belong to (object -> bytes,
    by identity), the oldest forgotten first beyond `entries_max` entries or
    `bytes_max` bytes. Holding the object keeps its id from being reused while
    the entry lives. Used from the core loop and the storage writer
    (sync_in_thread), hence the lock."""

    entries_max: int
    bytes_max: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[int, tuple[Any, bytes]] = {}
        self._bytes = 0

    def get(self, value: Any) -> bytes | None:
        """The bytes of this very object, if remembered."""
        entry = self._by_id.get(id(value))
        if entry is not None and entry[0] is value:
            return entry[1]
        return None

    def remember(self, value: Any, data: bytes) -> None:
        """`data` belongs to this very object."""
        with self._lock:
            self._put(value, data)
            self._evict()

    def _put(self, value: Any, data: bytes) -> None:
        """Remember (then `_evict`); the caller holds the lock."""
        old = self._by_id.pop(id(value), None)
        if old is not None:
            self._forget(old)
        self._by_id[id(value)] = (value, data)
        self._bytes += len(data)

    def _evict(self) -> None:
        while len(self._by_id) > self.entries_max or self._bytes > self.bytes_max:
            self._forget(self._by_id.pop(next(iter(self._by_id))))  # the oldest

    def _forget(self, entry: tuple[Any, bytes]) -> None:
        self._bytes -= len(entry[1])

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._bytes = 0


class _RecentEncodings(_BytesByIdentity):
    """The few most recent batches and their bytes, found either way.

    By identity (batch object -> bytes), for any batch encoded or decoded
    lately: the leader encodes the same batch for its WAL and for every
    follower's Accept, and a follower writes the batch it just decoded to its
    WAL. By bytes (bytes -> batch), only for bytes that were really decoded
    (`remember_decoded`): decoding is a pure function of the bytes, so a
    batch decoded from the very same bytes is the answer again. That spares a
    follower the second and third decode of a re-sent Accept, of the WAL's
    read-back check of what it writes, and of the check when compaction
    rewrites the log. Bytes that only came from an encode are never answers
    to a decode: the WAL's check of a freshly encoded record is a real decode.

    Values are immutable, so sharing them is safe.
    """

    entries_max = 4 * constants.pipeline_slots_max
    bytes_max = 32 * 1024 * 1024

    def __init__(self) -> None:
        super().__init__()
        self._by_bytes: dict[bytes, Batch] = {}

    def find(self, data: bytes) -> Batch | None:
        """The batch that decoding exactly `data` gave, if remembered."""
        with self._lock:
            return self._by_bytes.get(data)

    remember_encoded = _BytesByIdentity.remember  # by identity only: never an answer to a decode

    def remember_decoded(self, batch: Batch, data: bytes) -> None:
        # Small batches too: decoding even a one-transfer batch again (the
        # WAL's read-back check) costs more than remembering it.
        with self._lock:
            self._put(batch, data)
            self._by_bytes[data] = batch
            self._evict()

    def _forget(self, entry: tuple[Any, bytes]) -> None:
        super()._forget(entry)
        batch, data = entry
        if self._by_bytes.get(data) is batch:
            del self._by_bytes[data]

    def clear(self) -> None:
        with self._lock:
            self._by_bytes.clear()
        super().clear()


_recent = _RecentEncodings()


class _RecentCommands(_BytesByIdentity):
    """The bytes the leader's most recent client commands were decoded from,
    by the command object (a client request's body is exactly its command:
    wire/packed.py remembers it there).

    A leader puts those commands into a batch next: encoding it joins their
    bytes instead of packing each command again, and the batch counts as
    decoded from its bytes (`_RecentEncodings`), so the WAL's read-back check
    of the leader's own record needs no real decode either. Both are exact:
    a command decodes from its bytes consuming all of them, the layout is
    self-delimiting and the same at any offset, so a count followed by
    commands' bytes decodes to those commands; and decoding is canonical (a
    decoded value re-encodes to the bytes it came from,
    tests/test_batch_codec.py), so the joined bytes are what packing would
    give. Bounded: the oldest are forgotten first.
    """

    entries_max = 4 * constants.batch_commands_max
    bytes_max = 8 * 1024 * 1024


_recent_commands = _RecentCommands()


def remember_command(command: Command, data: bytes) -> None:
    """`command` was decoded from exactly `data` (a client request's body)."""
    _recent_commands.remember(command, data)


def forget_recent() -> None:
    """Forget every remembered encoding and decoding (tests and benchmarks
    that must measure or check the real work)."""
    _recent.clear()
    _recent_commands.clear()


# ---------------------------------------------------------------- the API


def encode_batch(batch: Batch) -> bytes:
    """The encoding of `batch`; ValueError if it does not fit the format."""
    data = _recent.get(batch)
    if data is None:
        data, decoded = _pack_batch(batch)
        if decoded:
            _recent.remember_decoded(batch, data)
        else:
            _recent.remember_encoded(batch, data)
    return data


def decode_batch(data: bytes, offset: int = 0) -> tuple[Batch, int]:
    """The batch at `offset` of `data` and the offset after it; FrameError if malformed."""
    try:
        return unpack_batch(data, offset)
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise _malformed("malformed batch", error) from None


def batch_at(data: bytes, offset: int) -> tuple[Batch, int]:
    """The batch at `offset` of `data` and the offset after it (raw errors as
    unpack_command), remembered by its bytes as batch_of_bytes remembers it: a
    follower writes each entry of an AcceptMany to its WAL next, and the
    WAL's read-back check finds it decoded already."""
    batch, end = unpack_batch(data, offset)
    _recent.remember_decoded(batch, data[offset:end])
    return batch, end


def batch_of_bytes(data: bytes) -> Batch:
    """Exactly `data` as one batch (raw errors as unpack_command, FrameError for
    trailing bytes), reusing the batch last decoded from the same bytes; a
    freshly decoded batch is remembered."""
    batch = _recent.find(data)
    if batch is not None:
        return batch
    batch, end = unpack_batch(data, 0)
    if end != len(data):
        raise FrameError(f"{len(data) - end} trailing bytes after the batch")
    _recent.remember_decoded(batch, data)
    return batch


def decode_command(data: bytes, offset: int = 0) -> tuple[Command, int]:
    """The command at `offset` of `data` and the offset after it; FrameError if malformed."""
    try:
        return unpack_command(data, offset)
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise _malformed("malformed command", error) from None


def write_batch(batch: Batch, stream: IO[bytes]) -> None:
    """Append the encoding of `batch` to `stream` (ValueError if it does not fit)."""
    stream.write(encode_batch(batch))


def _read_stream(stream: IO[bytes], decode: Any) -> Any:
    """Decode from the current position of `stream` and advance it past the value.

    construct hands fields an io.BytesIO; its getvalue() shares the buffer
    (no copy), so reading many batches from one body stays linear.
    """
    if isinstance(stream, io.BytesIO):
        value, end = decode(stream.getvalue(), stream.tell())
        stream.seek(end)
        return value
    data = stream.read()
    value, end = decode(data, 0)
    stream.seek(end - len(data), io.SEEK_CUR)
    return value


def read_batch(stream: IO[bytes]) -> Batch:
    """Read one batch from `stream`; FrameError if malformed."""
    batch: Batch = _read_stream(stream, decode_batch)
    return batch


# ---------------------------------------------------------------- construct fields


class _PackedField(Construct):  # type: ignore[misc]  # construct is untyped
    """A construct field whose value is packed by hand-written code."""

    def __init__(self, write: Any, read: Any) -> None:
        super().__init__()
        self._write = write
        self._read = read

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Any:
        return self._read(stream)

    def _build(self, obj: Any, stream: IO[bytes], context: Any, path: str) -> Any:
        self._write(obj, stream)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise SizeofError("a packed value has no fixed size", path=path)


Batch_ = _PackedField(write_batch, read_batch)
"""The construct field for a Batch that the bodies and records use."""
