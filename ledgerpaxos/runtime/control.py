"""The control endpoint: answers ControlRequest straight from the runtime.

Control never goes through consensus. Every answer is a ControlReply whose body
is a JSON object; the keys per operation:

    ping          {"node", "alive", "role", "leader", "paused"}
    print_log     {"node", "entries": [{"slot", "ballot", "status", "batch": [str, ...]}],
                   "older_left_out": n}   the newest entries within control_log_*_max
    print_db      {"node", "alive", "balances": {account: balance}, "start", "next",
                   "accounts", "total"}   argument: the position to start from (0: the first)
    print_status  {"node", "status": {"<slot>": "E|C|A|X|-"}}   argument: a slot, 0 = all known
    print_view    {"node", "alive", "role", "leader", "ballot", "promised", "views": [{"ballot", "leader"}],
                   "commit_slot", "executed_slot", "checkpoint_slot", "rejoin", "paused", "wal_fsyncs", "snapshots_written",
                   "checkpoint_digests": {"<slot>": hex}}   the newest checkpoints' state digests
    set_alive     {"node", "alive"}                              argument: 1 alive, 0 dead
    kill_leader   {"node", "alive"}, or ok=false and {"node", "reason"} when not the leader
    reset         {"node", "alive"}

A ballot is written "round.node" ("3.2"); `ballot` in print_view is the ballot
of the view the replica is in (its own ballot when it leads). A command in a
batch reads "<client>#<request no> (A, B, 3) (B, C, 1)", "<client>#<request no> read [ACCOUNT...]",
"<client>#<request no> open ACCOUNT... [for OWNER]" or "<client>#<request no> register".
Status letters: E executed, C committed, A accepted, X purged (folded into a
checkpoint), - nothing known. `wal_fsyncs` counts the WAL's fsyncs since the
process started (files and directory; one per group commit), `snapshots_written`
the snapshot files written (each one a file and a directory fsync more); the
benchmark reads them.

`paused` is null, or why the replica acknowledges nothing for now ("disk full:
data/n4"): its role then reads "paused", it is not alive, its figures are those
from before the pause, and every operation but ping and print_view is refused
with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from ledgerpaxos import constants
from ledgerpaxos.config import Config
from ledgerpaxos.core import Core, SlotView, Status
from ledgerpaxos.core.messages import (
    Command,
    CommandKind,
    ControlOp,
    ControlReply,
    ControlRequest,
)


class Controllable(Protocol):
    """What control needs of a running replica (runtime.replica.Replica)."""

    node_id: str
    alive: bool
    config: Config
    paused: str | None

    @property
    def snapshots_written(self) -> int: ...

    @property
    def core(self) -> Core: ...

    @property
    def wal_fsyncs(self) -> int: ...

    def reset(self) -> None: ...


def answer(replica: Controllable, request: ControlRequest) -> ControlReply:
    """Carry out one control request and describe the result."""
    core = replica.core
    status = core.status()
    node = replica.node_id
    op = request.op
    paused = replica.paused
    if paused is not None and op not in (ControlOp.ping, ControlOp.print_view):
        return refused(
            request,
            f"{node}: {paused}; it acknowledges nothing until writes succeed again, "
            "and then resumes by itself",
        )
    ok = True
    body: dict[str, Any]
    if op == ControlOp.ping:
        body = {
            "node": node,
            "alive": replica.alive,
            "role": status.role.value if paused is None else "paused",
            "leader": status.leader if paused is None else None,
            "paused": paused,
        }
    elif op == ControlOp.print_log:
        entries, left_out = newest_entries(core.log_view())
        body = {"node": node, "entries": entries, "older_left_out": left_out}
    elif op == ControlOp.print_db:
        body = db_page(core, request.argument)
        body.update(node=node, alive=replica.alive)
    elif op == ControlOp.print_status:
        body = {"node": node, "status": slot_statuses(core, status, request.argument)}
    elif op == ControlOp.print_view:
        body = {
            **describe_view(status),
            **({} if paused is None else {"role": "paused", "leader": None}),
            "paused": paused,
            "alive": replica.alive,
            "wal_fsyncs": replica.wal_fsyncs,
            "snapshots_written": replica.snapshots_written,
            "checkpoint_digests": {
                str(slot): digest.hex() for slot, digest in core.checkpoint_digests.items()
            },
        }
    elif op == ControlOp.set_alive:
        replica.alive = request.argument != 0
        body = {"node": node, "alive": replica.alive}
    elif op == ControlOp.kill_leader:
        if status.is_leader:
            replica.alive = False
            body = {"node": node, "alive": replica.alive}
        else:
            ok = False
            reason = f"{node} is not the leader (it believes {status.leader} is)"
            body = {"node": node, "reason": reason}
    elif op == ControlOp.reset:
        if replica.config.allow_reset:
            replica.reset()
            body = {"node": node, "alive": replica.alive}
        else:
            ok = False
            body = {
                "node": node,
                "reason": "reset is off: it wipes the ledger; only a config with "
                "allow_reset = true (a test cluster) allows it",
            }
    else:  # pragma: no cover - the wire decoder only lets known ops through
        raise AssertionError(f"unknown control op {op!r}")
    return ControlReply(op=op, ok=ok, body=json.dumps(body))


def refused(request: ControlRequest, reason: str) -> ControlReply:
    """The answer to a control request its sender may not make."""
    return ControlReply(op=request.op, ok=False, body=json.dumps({"reason": reason}))


def newest_entries(log: Sequence[SlotView]) -> tuple[list[dict[str, Any]], int]:
    """The newest log entries that fit the answer's bounds, in slot order, and
    how many older ones are left out: the answer is built in the core loop and
    held in a client's reply queue, so it must not grow with the log."""
    shown: list[dict[str, Any]] = []
    transfers = 0
    for view in reversed(log):
        transfers += sum(max(1, len(c.transfers)) for c in view.batch)
        if shown and (
            len(shown) >= constants.control_log_entries_max
            or transfers > constants.control_log_transfers_max
        ):
            break
        shown.append(describe_entry(view))
    shown.reverse()
    return shown, len(log) - len(shown)


def db_page(core: Core, start: int) -> dict[str, Any]:
    """A page of balances in account order (the initial accounts, then those
    opened): at most control_db_accounts_max from position `start`; `next` is
    where the next page starts (None after the last), `accounts` how many
    there are, `total` the money they hold."""
    ledger = core.ledger
    count = ledger.account_count
    start = min(max(0, start), count)
    page = ledger.page(start, constants.control_db_accounts_max)
    after = start + len(page)
    return {
        "balances": dict(page),
        "start": start,
        "next": after if after < count else None,
        "accounts": count,
        "total": ledger.total,
    }


def describe_command(command: Command) -> str:
    head = f"{command.client_id}#{command.request_no}"
    if command.kind == CommandKind.read:
        named = "".join(f" {a}" for a in command.accounts)
        return f"{head} read{named}"
    if command.kind == CommandKind.register:
        return f"{head} register"
    if command.kind == CommandKind.open:
        owner = f" for {command.owner}" if command.owner else ""
        return f"{head} open {' '.join(command.accounts)}{owner}"
    return " ".join([head, *(f"({t.sender}, {t.receiver}, {t.amount})" for t in command.transfers)])


def describe_entry(view: SlotView) -> dict[str, Any]:
    return {
        "slot": view.slot,
        "ballot": str(view.ballot),
        "status": view.status,
        "batch": [describe_command(c) for c in view.batch],
    }


def slot_statuses(core: Core, status: Status, slot: int) -> dict[str, str]:
    if slot > 0:
        return {str(slot): core.slot_status(slot)}
    top = max(status.commit_slot, status.executed_slot, core.last_slot())
    first = max(1, top - constants.status_slots_max + 1)
    return {str(s): core.slot_status(s) for s in range(first, top + 1)}


def describe_view(status: Status) -> dict[str, Any]:
    return {
        "node": status.node,
        "role": status.role.value,
        "leader": status.leader,
        "ballot": str(status.ballot),
        "promised": str(status.promised),
        "views": [{"ballot": str(b), "leader": leader} for b, leader in status.views],
        "commit_slot": status.commit_slot,
        "executed_slot": status.executed_slot,
        "checkpoint_slot": status.checkpoint_slot,
        "rejoin": status.rejoin,
    }
