"""Judges of a run: safety checked on every step, liveness after the heal.

The reference is a sequential replay of the canonical log: the batch that the
first replica to execute a slot executed there. Every later execution of that
slot, anywhere, must be the same batch with the same outcomes, every replica's
state must equal the replay's after the slots it executed, and every reply a
client receives must be the replay's outcome for that request.

A failed check raises `Violation` naming the property (a key of PROPERTIES),
through `Checks.fail`: a test may disable one property's check, to show that
the planted bug it exists for then goes uncaught (tests/test_sim_planted.py);
every check keeps the run going sensibly when it is disabled.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from ledgerpaxos import constants
from ledgerpaxos.core import Core, Executed, Ledger
from ledgerpaxos.core.messages import (
    Batch,
    ClientReply,
    Outcome,
)

CommandKey = tuple[str, int]

PROPERTIES: dict[str, str] = {
    "agreement": "no two replicas execute different batches for one slot",
    "executed-once": "a replica process never executes a slot twice",
    "replay": "every replica's state equals a sequential replay of the executed log",
    "conservation": "the sum of all balances never changes",
    "no-overdraft": "no balance ever goes below zero",
    "reply": "each acknowledged reply matches what the replay gives for that request",
    "exactly-once": "a duplicate request never applies twice",
    "checkpoint": "every checkpoint holds the replay's state at its slot",
    "persist-before-speak": "a promise or accepted entry is durable before a message reveals it (host/executor.py checks every send)",
    "committed-kept": "nothing committed is ever lost",
    "core-invariant": "the core never fails an assertion or raises",
    "core-alarm": "the core raises no alarm (e.g. a checkpoint digest mismatch)",
    "tick-due": "a tick the core said was not due (Core.ticks_until_due) does nothing a host carries out",
    "recovery": "a crashed replica always recovers from its own disk",
    "liveness": "after the heal, every request is answered and all replicas agree on slot and digest",
}


class Violation(Exception):
    """A property of PROPERTIES does not hold."""

    def __init__(self, prop: str, detail: str) -> None:
        assert prop in PROPERTIES, prop
        self.property = prop
        self.detail = detail
        super().__init__(f"{prop}: {detail}")


class Checks:
    """Where every check of the simulator fails: a Violation, unless disabled."""

    def __init__(self, disabled: Collection[str] = ()) -> None:
        unknown = sorted(set(disabled) - set(PROPERTIES))
        if unknown:
            raise ValueError(f"unknown properties {unknown}; known: {sorted(PROPERTIES)}")
        self.disabled = frozenset(disabled)

    def enabled(self, prop: str) -> bool:
        return prop not in self.disabled

    def fail(self, prop: str, detail: str) -> None:
        """Raise Violation(prop, detail), or return if that check is disabled."""
        assert prop in PROPERTIES, prop
        if prop not in self.disabled:
            raise Violation(prop, detail)


# ---------------------------------------------------------------- the reference


class ReferenceLedger:
    """The canonical log and its sequential replay."""

    def __init__(
        self,
        accounts: Sequence[str],
        initial_balance: int,
        checks: Checks | None = None,
        client_accounts: Mapping[str, Sequence[str]] | None = None,
        sessions_max: int = constants.client_sessions_max_default,
    ) -> None:
        self.checks = checks if checks is not None else Checks()
        self.ledger = Ledger(accounts, initial_balance, client_accounts, sessions_max=sessions_max)
        self.total = self.ledger.total
        self.canonical: dict[int, Batch] = {}
        self.first_executor: dict[int, str] = {}
        self.applied = 0
        self.outcomes: dict[int, tuple[Outcome | None, ...]] = {}
        self.digests: dict[int, bytes] = {0: self.ledger.digest()}
        # The outcomes each request got: one, or for a read or a request refused
        # as evicted (which change nothing, so run again when re-sent) one per run.
        self.results: dict[CommandKey, list[Outcome]] = {}
        self.slot_of: dict[CommandKey, int] = {}  # where it was first executed

    def learn(self, slot: int, batch: Batch, node: str) -> list[int]:
        """Record that `node` executed `batch` at `slot`; returns the slots the
        replay newly applied."""
        known = self.canonical.get(slot)
        if known is not None:
            if known != batch:
                self.checks.fail(
                    "agreement",
                    f"slot {slot}: {node} executed {_keys(batch)}, "
                    f"{self.first_executor[slot]} executed {_keys(known)}",
                )
            return []
        self.canonical[slot] = batch
        self.first_executor[slot] = node
        applied: list[int] = []
        while self.applied + 1 in self.canonical:
            self._apply(self.applied + 1)
            applied.append(self.applied)
        return applied

    def _apply(self, slot: int) -> None:
        outcomes: list[Outcome | None] = []
        for index, command in enumerate(self.canonical[slot]):
            outcome = self.ledger.execute(command, slot=slot, index=index)
            outcomes.append(outcome)
            if outcome is not None:
                key = (command.client_id, command.request_no)
                self.results.setdefault(key, []).append(outcome)
                self.slot_of.setdefault(key, slot)
        self.outcomes[slot] = tuple(outcomes)
        self.applied = slot
        self.digests[slot] = self.ledger.digest()


def _keys(batch: Batch) -> str:
    return "[" + " ".join(f"{c.client_id}#{c.request_no}" for c in batch) + "]" if batch else "noop"


# ---------------------------------------------------------------- safety


class SafetyChecker:
    """Every replica's executions, states, checkpoints and replies against the reference."""

    def __init__(
        self,
        accounts: Sequence[str],
        initial_balance: int,
        checks: Checks | None = None,
        *,
        client_accounts: Mapping[str, Sequence[str]] | None = None,
        sessions_max: int = constants.client_sessions_max_default,
    ) -> None:
        self.checks = checks if checks is not None else Checks()
        self.reference = ReferenceLedger(
            accounts, initial_balance, self.checks, client_accounts, sessions_max
        )
        self.last_executed: dict[str, int] = {}  # per replica process (incarnation)
        self.checked_state_at: dict[str, int] = {}
        # Executions of slots the replay has not reached yet, compared once it has.
        self._pending: dict[int, list[tuple[str, Executed]]] = {}
        self.max_executed = 0
        self.duplicates_skipped = 0  # commands executed as duplicates (applied once)

    def process_started(self, node: str, executed_from: int) -> None:
        """A replica process (re)started; it executes slots after `executed_from`."""
        self.last_executed[node] = executed_from
        self.checked_state_at.pop(node, None)

    def checkpoint_installed(self, node: str, slot: int) -> None:
        self.last_executed[node] = max(self.last_executed[node], slot)

    def executed(self, node: str, executed: Executed) -> None:
        slot = executed.slot
        if slot <= self.last_executed[node]:
            self.checks.fail(
                "executed-once",
                f"{node} executed slot {slot} after slot {self.last_executed[node]}",
            )
        self.last_executed[node] = max(self.last_executed[node], slot)
        self.max_executed = max(self.max_executed, slot)
        self.duplicates_skipped += sum(1 for o in executed.outcomes if o is None)
        for applied in self.reference.learn(slot, executed.batch, node):
            for other, earlier in self._pending.pop(applied, ()):
                self._compare_outcomes(other, earlier)
        if slot <= self.reference.applied:
            self._compare_outcomes(node, executed)
        else:
            self._pending.setdefault(slot, []).append((node, executed))

    def _compare_outcomes(self, node: str, executed: Executed) -> None:
        slot, outcomes = executed.slot, executed.outcomes
        expected = self.reference.outcomes[slot]
        if outcomes == expected:
            return
        if executed.batch != self.reference.canonical[slot]:
            # Only when the agreement check is off: another batch, other outcomes.
            self.checks.fail(
                "replay", f"{node} slot {slot}: executed {_keys(executed.batch)}, not the replay's"
            )
            return
        for command, got, want in zip(executed.batch, outcomes, expected, strict=True):
            key = f"{command.client_id}#{command.request_no}"
            if want is None and got is not None:
                self.checks.fail(
                    "exactly-once",
                    f"{node} applied {key} again at slot {slot} "
                    f"(first applied at slot {self.reference.slot_of.get(command.key)})",
                )
            elif got != want:
                self.checks.fail(
                    "replay", f"{node} slot {slot} {key}: got {got}, replay gives {want}"
                )

    def state(self, node: str, core: Core, slot: int) -> None:
        """The replica's whole state against the replay after the slots it
        executed (`slot`, its status's executed_slot)."""
        if self.checked_state_at.get(node) == slot:
            return
        self.checked_state_at[node] = slot
        balances = core.balances()
        total = sum(balances.values())
        if total != self.reference.total:
            self.checks.fail(
                "conservation", f"{node} balances sum to {total}, not {self.reference.total}"
            )
        negative = sorted(a for a, b in balances.items() if b < 0)
        if negative:
            self.checks.fail(
                "no-overdraft", f"{node}: accounts {negative} below zero at slot {slot}"
            )
        expected = self.reference.digests.get(slot)
        if expected is None:
            self.checks.fail(
                "replay",
                f"{node} executed up to slot {slot}, the replay only to {self.reference.applied}",
            )
        elif core.state_digest() != expected:
            self.checks.fail(
                "replay",
                f"{node} state after slot {slot} differs from the replay: {_state_difference(core, self.reference, slot)}",
            )

    def checkpoint(self, node: str, slot: int, digest: bytes) -> None:
        """A checkpoint taken, or a snapshot written or installed, at `slot`."""
        expected = self.reference.digests.get(slot)
        if expected != digest:
            self.checks.fail(
                "checkpoint",
                f"{node} checkpoint at slot {slot} has digest {digest.hex()[:16]}, "
                f"the replay {expected.hex()[:16] if expected else 'nothing'}",
            )

    def reply(self, client: str, reply: ClientReply) -> None:
        key = (reply.client_id, reply.request_no)
        expected = self.reference.results.get(key)
        if expected is None:
            self.checks.fail(
                "reply",
                f"{client} got a reply for {key[0]}#{key[1]}, which the replay never applied",
            )
        elif reply.outcome not in expected:
            gives = expected[0] if len(expected) == 1 else " or ".join(map(str, expected))
            self.checks.fail(
                "reply",
                f"{client} got {reply.outcome} for {key[0]}#{key[1]}, the replay gives {gives}",
            )


def check_committed_kept(
    checks: Checks,
    replicas: Mapping[str, tuple[int, Mapping[str, int]]],
    answered: Mapping[str, int],
    max_executed: int,
    *,
    converged: bool,
) -> None:
    """At the end of a run: nothing once executed or acknowledged is lost.

    `replicas`: each running replica's executed slot and client table (each
    client's last executed request number); `answered`: each client's highest
    answered request number. Converged, every replica must hold all of it;
    otherwise (liveness reports what is missing) at least one must, or it is
    lost from the whole cluster."""
    if not replicas:
        return
    highest = max(executed for executed, _ in replicas.values())
    if highest < max_executed:
        checks.fail(
            "committed-kept",
            f"slot {max_executed} was executed once, but no replica gets past {highest}",
        )
        return
    for client, request_no in sorted(answered.items()):
        if request_no == 0:
            continue
        held = [n for n, (_, table) in replicas.items() if table.get(client, 0) >= request_no]
        missing = sorted(set(replicas) - set(held))
        if not held or (converged and missing):
            where = ", ".join(f"{n} has {replicas[n][1].get(client, 'nothing')}" for n in missing)
            checks.fail(
                "committed-kept",
                f"{client}#{request_no} was answered, but {where} in its client table",
            )
            return


def _state_difference(core: Core, reference: ReferenceLedger, slot: int) -> str:
    """Explain a digest mismatch (only the current replay state is at hand when
    the slot is the replay's newest; otherwise just the slot)."""
    if slot != reference.applied:
        return f"digest {core.state_digest().hex()[:16]} vs {reference.digests[slot].hex()[:16]}"
    ref = reference.ledger
    diffs = [
        f"{a}: {b} vs {ref.balance(a)}"
        for a, b in sorted(core.balances().items())
        if ref.balance(a) != b
    ]
    mine = dict(sorted(core.client_request_nos().items()))
    theirs = {c: e.request_no for c, e in sorted(ref.clients.items())}
    if mine != theirs:
        diffs.append(f"client table {mine} vs {theirs}")
    return "; ".join(diffs) or "outcomes stored in the client table differ"
