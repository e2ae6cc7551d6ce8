"""One construct body per message type, and the message type numbers.

Each body maps field-for-field onto its frozen attrs message class (see
`fields.AttrsAdapter`); the frame header's message type selects the body.
"""

from __future__ import annotations

import enum
import typing

import attrs
from construct import Struct

from ledgerpaxos import constants
from ledgerpaxos.core import messages as m

from .batch import Batch_, CommandField
from .fields import (
    U8,
    U32,
    U64,
    AttrsAdapter,
    BallotField,
    BoundedArray,
    BoundedString,
    ClientId,
    Digest,
    Flag,
    Maybe,
    NodeId,
    Pair,
    RequestNo,
    Slot,
    StrictEnum,
)
from .values import LogEntries, OutcomeField, SnapshotField


class MessageType(enum.IntEnum):
    """The message type byte of the frame header. Never renumber: append."""

    pre_vote = 1
    pre_vote_reply = 2
    prepare = 3
    promise = 4
    accept = 5
    new_view = 6
    accepted = 7
    nack = 8
    heartbeat = 9
    heartbeat_ack = 10
    catchup_request = 11
    catchup_reply = 12
    install_checkpoint = 13
    client_request = 14
    client_reply = 15
    control_request = 16
    control_reply = 17
    rejoin_request = 18
    rejoin_reply = 19
    accept_many = 20
    accepted_many = 21


@attrs.frozen
class BodyCodec:
    message_type: MessageType
    message_class: type
    field: AttrsAdapter


def _body(message_type: MessageType, message_class: type, *fields: object) -> BodyCodec:
    return BodyCodec(message_type, message_class, AttrsAdapter(message_class, Struct(*fields)))


_CODECS = (
    _body(MessageType.pre_vote, m.PreVote, "ballot" / BallotField),
    _body(MessageType.pre_vote_reply, m.PreVoteReply, "ballot" / BallotField, "granted" / Flag),
    _body(MessageType.prepare, m.Prepare, "ballot" / BallotField),
    _body(
        MessageType.promise,
        m.Promise,
        "ballot" / BallotField,
        "checkpoint_slot" / Slot,
        "commit_slot" / Slot,
        "entries" / LogEntries(),
    ),
    _body(
        MessageType.accept,
        m.Accept,
        "ballot" / BallotField,
        "slot" / Slot,
        "commit_slot" / Slot,
        "purge_slot" / Slot,
        "commit_chain" / Digest,
        "batch" / Batch_,
    ),
    _body(
        MessageType.new_view,
        m.NewView,
        "ballot" / BallotField,
        "commit_slot" / Slot,
        "purge_slot" / Slot,
        "commit_chain" / Digest,
        "entries" / LogEntries(),
    ),
    _body(
        MessageType.accepted,
        m.Accepted,
        "ballot" / BallotField,
        "slot" / Slot,
        "digest" / Digest,
    ),
    _body(
        MessageType.accept_many,
        m.AcceptMany,
        "ballot" / BallotField,
        "commit_slot" / Slot,
        "purge_slot" / Slot,
        "commit_chain" / Digest,
        "entries" / LogEntries(constants.accept_many_slots_max),
    ),
    _body(
        MessageType.accepted_many,
        m.AcceptedMany,
        "ballot" / BallotField,
        "votes" / BoundedArray(Pair(Slot, Digest), constants.accept_many_slots_max),
    ),
    _body(MessageType.nack, m.Nack, "ballot" / BallotField, "promised" / BallotField),
    _body(
        MessageType.heartbeat,
        m.Heartbeat,
        "ballot" / BallotField,
        "commit_slot" / Slot,
        "purge_slot" / Slot,
        "commit_chain" / Digest,
    ),
    _body(
        MessageType.heartbeat_ack,
        m.HeartbeatAck,
        "ballot" / BallotField,
        "executed_slot" / Slot,
        "checkpoint_slot" / Slot,
        "checkpoint_digest" / Digest,
    ),
    _body(
        MessageType.catchup_request,
        m.CatchupRequest,
        "after_slot" / Slot,
        "nonce" / U64,
        "install_slot" / Slot,
        "part" / U32,
    ),
    _body(
        MessageType.catchup_reply,
        m.CatchupReply,
        "nonce" / U64,
        "commit_slot" / Slot,
        "chain" / Digest,
        "entries" / LogEntries(constants.catchup_slots_max),
    ),
    _body(
        MessageType.install_checkpoint,
        m.InstallCheckpoint,
        "nonce" / U64,
        "part" / U32,
        "parts" / U32,
        "snapshot" / SnapshotField,
    ),
    _body(MessageType.rejoin_request, m.RejoinRequest, "nonce" / U64),
    _body(
        MessageType.rejoin_reply,
        m.RejoinReply,
        "nonce" / U64,
        "promised" / BallotField,
        "checkpoint_slot" / Slot,
        "commit_slot" / Slot,
        "entries" / LogEntries(),
    ),
    _body(MessageType.client_request, m.ClientRequest, "command" / CommandField),
    _body(
        MessageType.client_reply,
        m.ClientReply,
        "client_id" / ClientId,
        "request_no" / RequestNo,
        "outcome" / OutcomeField,
        "leader" / Maybe(NodeId),
    ),
    _body(
        MessageType.control_request,
        m.ControlRequest,
        "op" / StrictEnum(U8, m.ControlOp),
        "argument" / U64,
    ),
    _body(
        MessageType.control_reply,
        m.ControlReply,
        "op" / StrictEnum(U8, m.ControlOp),
        "ok" / Flag,
        "body" / BoundedString(constants.message_size_max),
    ),
)

CODEC_BY_TYPE: dict[MessageType, BodyCodec] = {codec.message_type: codec for codec in _CODECS}
CODEC_BY_CLASS: dict[type, BodyCodec] = {codec.message_class: codec for codec in _CODECS}

assert set(CODEC_BY_TYPE) == set(MessageType), "every message type has a body"
assert len(CODEC_BY_CLASS) == len(_CODECS), "one message type per class"
assert set(CODEC_BY_CLASS) == set(typing.get_args(m.Message)), "every message class has a body"
