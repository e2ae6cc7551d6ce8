"""Client requests at any replica: duplicates, and whom to reply to.

A request is answered by the replica its client sent it to, once that
replica executes it (or at once from the client table, for a retry of the
newest request already executed). What happens to a new request depends on
the role: a leader queues it (leading.on_client_request), any other replica
forwards it to the leader it knows (following.on_client_request).

Functions of a `Core`, called by the role's handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerpaxos.core.messages import ClientReply, ClientRequest, Command, Outcome

if TYPE_CHECKING:
    from ledgerpaxos.core.replica import Core


def admit(core: Core, request: ClientRequest, sender: str | None) -> bool:
    """False for a request already executed (answered here from the client
    table when it is the newest); else remember to reply if its client waits
    on this replica (`sender` None), and True."""
    command = request.command
    key = command.key
    if core.ledger.is_duplicate(command):
        outcome = core.ledger.stored_outcome(*key)
        if outcome is not None and sender is None:
            reply(core, command, outcome)  # ignore: older requests get nothing
        return False
    if sender is None:
        # Its client waits on this replica: reply when it executes. Other
        # commands (forwarded here, or only in the log) execute without a reply.
        core.asked_here[key] = None
        core.asked_here.move_to_end(key)
        if len(core.asked_here) > core.s.pending_commands_max:
            core.asked_here.popitem(last=False)
    return True


def reply(core: Core, command: Command, outcome: Outcome) -> None:
    core.ready.replies.append(
        ClientReply(
            client_id=command.client_id,
            request_no=command.request_no,
            outcome=outcome,
            leader=core.leader,
        )
    )
