"""Hypothesis strategies for every value, message and record of ledgerpaxos.

Everything generated here fits the wire format (string lengths in UTF-8 bytes,
integer widths, element counts), so `wire.encode_frame` never refuses it. Sizes
are kept small so that tests stay fast; pass `accounts=` to draw account names
from a fixed set (e.g. the configured accounts) instead of arbitrary text.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from ledgerpaxos import constants
from ledgerpaxos.core import messages as m

u8 = st.integers(0, 2**8 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
slots = u64
request_nos = u64
node_indexes = st.integers(0, constants.replicas_max)
cluster_ids = u32
senders = node_indexes


def utf8_text(
    length_max: int, *, min_size: int = 0, chars_max: int | None = None
) -> st.SearchStrategy[str]:
    """Text of at most `length_max` UTF-8 bytes (cut at a character boundary)."""

    def cut(text: str) -> str:
        return text.encode("utf-8")[:length_max].decode("utf-8", "ignore")

    chars = length_max if chars_max is None else chars_max
    return st.text(min_size=min_size, max_size=chars).map(cut).filter(lambda s: len(s) >= min_size)


def account_names(accounts: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    if accounts is not None:
        return st.sampled_from(list(accounts))
    return utf8_text(constants.account_name_length_max, min_size=1)


client_ids = utf8_text(constants.client_id_length_max, min_size=1)
node_ids = utf8_text(constants.node_id_length_max, min_size=1)
reasons = utf8_text(constants.reason_length_max, min_size=1, chars_max=60)
digests = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=64))
chains = st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=64))


def ballots() -> st.SearchStrategy[m.Ballot]:
    return st.builds(m.Ballot, u64, node_indexes)


def transfers(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.Transfer]:
    return st.builds(
        m.Transfer,
        sender=account_names(accounts),
        receiver=account_names(accounts),
        amount=i64,
    )


def commands(
    accounts: Sequence[str] | None = None, *, transfers_max: int = 4
) -> st.SearchStrategy[m.Command]:
    transfer_commands = st.builds(
        m.Command,
        client_id=client_ids,
        request_no=request_nos,
        kind=st.just(m.CommandKind.transfer),
        session=request_nos,
        transfers=st.lists(transfers(accounts), min_size=1, max_size=transfers_max).map(tuple),
    )
    read_commands = st.builds(
        m.Command,
        client_id=client_ids,
        request_no=request_nos,
        kind=st.just(m.CommandKind.read),
        accounts=st.lists(account_names(accounts), max_size=3).map(tuple),
    )
    open_commands = st.builds(
        m.Command,
        client_id=client_ids,
        request_no=request_nos,
        kind=st.just(m.CommandKind.open),
        session=request_nos,
        accounts=st.lists(account_names(accounts), min_size=1, max_size=3).map(tuple),
        owner=st.one_of(st.just(""), client_ids),
    )
    register_commands = st.builds(
        m.Command,
        client_id=client_ids,
        request_no=request_nos,
        kind=st.just(m.CommandKind.register),
    )
    return st.one_of(transfer_commands, read_commands, open_commands, register_commands)


def batches(
    accounts: Sequence[str] | None = None, *, commands_max: int = 4
) -> st.SearchStrategy[m.Batch]:
    """A slot's value; the empty batch (the no-op) included."""
    return st.lists(commands(accounts), max_size=commands_max).map(tuple)


def log_entries(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.LogEntry]:
    return st.builds(m.LogEntry, slot=slots, ballot=ballots(), batch=batches(accounts))


def entry_tuples(
    accounts: Sequence[str] | None = None, *, entries_max: int = 3
) -> st.SearchStrategy[tuple[m.LogEntry, ...]]:
    return st.lists(log_entries(accounts), max_size=entries_max).map(tuple)


def transfer_results() -> st.SearchStrategy[m.TransferResult]:
    return st.one_of(
        st.builds(m.TransferResult, ok=st.just(True), reason=st.none()),
        st.builds(m.TransferResult, ok=st.just(False), reason=reasons),
    )


def balance_tuples(
    accounts: Sequence[str] | None = None,
) -> st.SearchStrategy[tuple[tuple[str, int], ...]]:
    """(account, balance) pairs, one per account, sorted by account."""
    return st.dictionaries(account_names(accounts), i64, max_size=5).map(
        lambda balances: tuple(sorted(balances.items()))
    )


def outcomes(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.Outcome]:
    transfer_outcomes = st.builds(
        m.Outcome,
        results=st.lists(transfer_results(), min_size=1, max_size=4).map(tuple),
        slot=slots,
        index=u32,
    )
    evicted_outcomes = st.builds(m.Outcome, slot=slots, index=u32, evicted=st.just(True))
    read_outcomes = st.builds(m.Outcome, balances=balance_tuples(accounts), slot=slots, index=u32)
    return st.one_of(transfer_outcomes, read_outcomes, evicted_outcomes)


def client_entries(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.ClientEntry]:
    return st.builds(
        m.ClientEntry,
        client_id=client_ids,
        request_no=request_nos,
        outcome=outcomes(accounts),
        session=request_nos,
    )


def snapshots(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.Snapshot]:
    clients = st.lists(
        client_entries(accounts), max_size=3, unique_by=lambda entry: entry.client_id
    ).map(lambda entries: tuple(sorted(entries, key=lambda entry: entry.client_id)))
    return st.builds(
        m.Snapshot,
        slot=slots,
        balances=balance_tuples(accounts),
        opened=st.lists(st.tuples(account_names(accounts), client_ids, i64), max_size=3).map(tuple),
        clients=clients,
        digest=st.binary(min_size=32, max_size=32),
        chain=st.binary(min_size=16, max_size=16),
    )


# ---------------------------------------------------------------- messages

control_ops = st.sampled_from(list(m.ControlOp))


def message_strategies(accounts: Sequence[str] | None = None) -> dict[type, st.SearchStrategy]:
    """One strategy per message class."""

    def entries_with_commit_point(message_class: type) -> st.SearchStrategy:
        # NewView and AcceptMany: the same fields
        return st.builds(
            message_class,
            ballot=ballots(),
            entries=entry_tuples(accounts),
            commit_slot=slots,
            commit_chain=chains,
            purge_slot=slots,
        )

    return {
        m.PreVote: st.builds(m.PreVote, ballot=ballots()),
        m.PreVoteReply: st.builds(m.PreVoteReply, ballot=ballots(), granted=st.booleans()),
        m.Prepare: st.builds(m.Prepare, ballot=ballots()),
        m.Promise: st.builds(
            m.Promise,
            ballot=ballots(),
            checkpoint_slot=slots,
            commit_slot=slots,
            entries=entry_tuples(accounts),
        ),
        m.Accept: st.builds(
            m.Accept,
            ballot=ballots(),
            slot=slots,
            batch=batches(accounts),
            commit_slot=slots,
            commit_chain=chains,
            purge_slot=slots,
        ),
        m.NewView: entries_with_commit_point(m.NewView),
        m.Accepted: st.builds(m.Accepted, ballot=ballots(), slot=slots, digest=chains),
        m.AcceptMany: entries_with_commit_point(m.AcceptMany),
        m.AcceptedMany: st.builds(
            m.AcceptedMany,
            ballot=ballots(),
            votes=st.lists(st.tuples(slots, chains), max_size=4).map(tuple),
        ),
        m.Nack: st.builds(m.Nack, ballot=ballots(), promised=ballots()),
        m.Heartbeat: st.builds(
            m.Heartbeat,
            ballot=ballots(),
            commit_slot=slots,
            commit_chain=chains,
            purge_slot=slots,
        ),
        m.HeartbeatAck: st.builds(
            m.HeartbeatAck,
            ballot=ballots(),
            executed_slot=slots,
            checkpoint_slot=slots,
            checkpoint_digest=digests,
        ),
        m.CatchupRequest: st.builds(m.CatchupRequest, after_slot=slots, nonce=u64),
        m.CatchupReply: st.builds(
            m.CatchupReply,
            entries=entry_tuples(accounts),
            commit_slot=slots,
            chain=chains,
            nonce=u64,
        ),
        m.InstallCheckpoint: st.builds(
            m.InstallCheckpoint, snapshot=snapshots(accounts), nonce=u64
        ),
        m.RejoinRequest: st.builds(m.RejoinRequest, nonce=u64),
        m.RejoinReply: st.builds(
            m.RejoinReply,
            nonce=u64,
            promised=ballots(),
            checkpoint_slot=slots,
            commit_slot=slots,
            entries=entry_tuples(accounts),
        ),
        m.ClientRequest: st.builds(m.ClientRequest, command=commands(accounts)),
        m.ClientReply: st.builds(
            m.ClientReply,
            client_id=client_ids,
            request_no=request_nos,
            outcome=outcomes(accounts),
            leader=st.none() | node_ids,
        ),
        m.ControlRequest: st.builds(m.ControlRequest, op=control_ops, argument=u64),
        m.ControlReply: st.builds(
            m.ControlReply, op=control_ops, ok=st.booleans(), body=st.text(max_size=200)
        ),
    }


MESSAGE_STRATEGIES = message_strategies()


def messages(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.Message]:
    """Any message."""
    return st.one_of(*message_strategies(accounts).values())


def peer_messages(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.PeerMessage]:
    peer_classes = set(m.PeerMessage.__args__)
    return st.one_of(
        *(strategy for cls, strategy in message_strategies(accounts).items() if cls in peer_classes)
    )


# ---------------------------------------------------------------- WAL records


def wal_records(accounts: Sequence[str] | None = None) -> st.SearchStrategy[m.WalRecord]:
    return st.one_of(
        st.builds(m.PromiseRecord, ballot=ballots()),
        st.builds(m.AcceptRecord, entry=log_entries(accounts)),
        st.builds(m.CommitRecord, commit_slot=slots),
    )
