"""Construct fields for the composite values that messages and records carry."""

from __future__ import annotations

from construct import Struct

from ledgerpaxos import constants
from ledgerpaxos.core.messages import (
    ClientEntry,
    LogEntry,
    Outcome,
    Snapshot,
    TransferResult,
)

from .batch import Batch_
from .fields import (
    I64,
    U32,
    U64,
    AccountName,
    AttrsAdapter,
    Balances,
    BallotField,
    BoundedArray,
    ClientId,
    Digest,
    Flag,
    Maybe,
    Reason,
    RequestNo,
    Slot,
    Triple,
)
from .packed import Outcome_

LogEntryField = AttrsAdapter(
    LogEntry,
    Struct(
        "slot" / Slot,
        "ballot" / BallotField,
        "batch" / Batch_,
    ),
)

TransferResultField = AttrsAdapter(
    TransferResult,
    Struct(
        "ok" / Flag,
        "reason" / Maybe(Reason),
    ),
)

# The declaration of an Outcome; `packed.Outcome_` packs exactly these bytes
# with struct (one result per transfer: construct is far slower per item).
OutcomeField = AttrsAdapter(
    Outcome,
    Struct(
        "results" / BoundedArray(TransferResultField, constants.transfers_per_request_max),
        "slot" / Slot,
        "index" / U32,
        "balances" / Maybe(Balances),
        "evicted" / Flag,
    ),
)

ClientEntryField = AttrsAdapter(
    ClientEntry,
    Struct(
        "client_id" / ClientId,
        "request_no" / RequestNo,
        "outcome" / Outcome_,
        "session" / U64,
    ),
)

OpenedAccountField = Triple(AccountName, ClientId, I64)  # (name, owner, balance)

SnapshotField = AttrsAdapter(
    Snapshot,
    Struct(
        "slot" / Slot,
        "balances" / Balances,
        "opened" / BoundedArray(OpenedAccountField),
        "clients" / BoundedArray(ClientEntryField),
        "digest" / Digest,
        "chain" / Digest,
    ),
)


def LogEntries(count_max: int | None = None) -> BoundedArray:
    """A tuple of log entries, at most `count_max` (default: as many as fit in a body)."""
    if count_max is None:
        return BoundedArray(LogEntryField)
    return BoundedArray(LogEntryField, count_max)
