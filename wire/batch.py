"""The codec of a slot's value: a batch of client commands, each with its transfers.

This is the hot path of the format (every Accept, NewView, Promise, catch-up and
WAL accept record carries batches), so it lives in exactly one place:
`write_batch` / `read_batch`. `BatchField` is the construct field the bodies use,
and it only calls that pair. To replace the declarative construct code below
with hand-packed `struct` records later, rewrite the two functions (keep their
strictness: counts checked before elements, UTF-8 strict, exact lengths) and
nothing else changes.
"""

from __future__ import annotations

from typing import IO, Any

from construct import Construct, SizeofError, Struct

from ledgerpaxos import constants
from ledgerpaxos.core.messages import Batch, Command, CommandKind, Transfer

from .fields import (
    I64,
    U8,
    AccountName,
    AttrsAdapter,
    BoundedArray,
    ClientId,
    RequestNo,
    StrictEnum,
)

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
        "kind" / StrictEnum(U8, CommandKind),
        "transfers" / BoundedArray(TransferField, constants.transfers_per_request_max),
    ),
)

_BatchStruct = BoundedArray(CommandField, constants.batch_commands_max)


def write_batch(batch: Batch, stream: IO[bytes]) -> None:
    """Append the encoding of `batch` to `stream` (ValueError/ConstructError if it does not fit)."""
    _BatchStruct.build_stream(batch, stream)


def read_batch(stream: IO[bytes]) -> Batch:
    """Read one batch from `stream` (ConstructError/ValueError if malformed)."""
    batch: Batch = _BatchStruct.parse_stream(stream)
    return batch


class BatchField(Construct):
    """The construct field for a Batch; delegates to `write_batch` / `read_batch`."""

    def _parse(self, stream: IO[bytes], context: Any, path: str) -> Batch:
        return read_batch(stream)

    def _build(self, obj: Batch, stream: IO[bytes], context: Any, path: str) -> Batch:
        write_batch(obj, stream)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise SizeofError("a batch has no fixed size", path=path)


Batch_ = BatchField()
