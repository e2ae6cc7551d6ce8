"""The trace of a run: every event in order, as text, and a hash of all of it.

Two runs of one seed give the same trace hash, also under a different
PYTHONHASHSEED: the texts never come from iterating a set or an unsorted dict
of strings, nor from hash(). Batches run without a trace (it costs time);
`ledgerpaxos-sim --seed N` computes the hash, `--trace` also prints every line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ledgerpaxos.core.messages import (
    Accept,
    Accepted,
    AcceptedMany,
    AcceptMany,
    Batch,
    CatchupReply,
    CatchupRequest,
    ClientReply,
    ClientRequest,
    Command,
    Heartbeat,
    HeartbeatAck,
    InstallCheckpoint,
    Nack,
    NewView,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
)


class Trace:
    def __init__(self, *, emit: Callable[[str], None] | None = None) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self._emit = emit
        self.lines = 0

    def add(self, now_us: int, text: str) -> None:
        line = f"{now_us / 1000:10.3f} {text}"
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.lines += 1
        if self._emit is not None:
            self._emit(line)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def describe_command(command: Command) -> str:
    return f"{command.client_id}#{command.request_no}"


def describe_batch(batch: Batch) -> str:
    if not batch:
        return "noop"
    return "[" + " ".join(describe_command(c) for c in batch) + "]"


def describe(message: object) -> str:
    """A short, deterministic description of a message for the trace."""
    name = type(message).__name__
    if isinstance(message, Accept):
        return f"Accept b={message.ballot} s={message.slot} {describe_batch(message.batch)} c={message.commit_slot} p={message.purge_slot}"
    if isinstance(message, Accepted):
        return f"Accepted b={message.ballot} s={message.slot}"
    if isinstance(message, AcceptMany):
        entries = " ".join(f"{e.slot}:{describe_batch(e.batch)}" for e in message.entries)
        return f"AcceptMany b={message.ballot} c={message.commit_slot} p={message.purge_slot} {{{entries}}}"
    if isinstance(message, AcceptedMany):
        slots = ",".join(str(slot) for slot, _ in message.votes)
        return f"AcceptedMany b={message.ballot} s={slots}"
    if isinstance(message, Heartbeat):
        return f"Heartbeat b={message.ballot} c={message.commit_slot} p={message.purge_slot}"
    if isinstance(message, HeartbeatAck):
        return f"HeartbeatAck b={message.ballot} e={message.executed_slot} cp={message.checkpoint_slot}"
    if isinstance(message, (PreVote, PreVoteReply, Prepare)):
        extra = f" granted={message.granted}" if isinstance(message, PreVoteReply) else ""
        return f"{name} b={message.ballot}{extra}"
    if isinstance(message, Promise):
        entries = ",".join(f"{e.slot}@{e.ballot}" for e in message.entries)
        return f"Promise b={message.ballot} cp={message.checkpoint_slot} c={message.commit_slot} [{entries}]"
    if isinstance(message, NewView):
        entries = " ".join(f"{e.slot}:{describe_batch(e.batch)}" for e in message.entries)
        return f"NewView b={message.ballot} c={message.commit_slot} p={message.purge_slot} {{{entries}}}"
    if isinstance(message, Nack):
        return f"Nack b={message.ballot} promised={message.promised}"
    if isinstance(message, CatchupRequest):
        installing = (
            f" install={message.install_slot} part={message.part}" if message.install_slot else ""
        )
        return f"CatchupRequest after={message.after_slot}{installing}"
    if isinstance(message, CatchupReply):
        slots = f"{message.entries[0].slot}..{message.entries[-1].slot}" if message.entries else "-"
        return f"CatchupReply {slots} c={message.commit_slot}"
    if isinstance(message, InstallCheckpoint):
        return (
            f"InstallCheckpoint s={message.snapshot.slot} d={message.snapshot.digest.hex()[:12]}"
            f" part {message.part + 1}/{message.parts}"
        )
    if isinstance(message, ClientRequest):
        return f"ClientRequest {describe_command(message.command)}"
    if isinstance(message, ClientReply):
        return f"ClientReply {message.client_id}#{message.request_no} ok={message.outcome.ok}"
    return name
