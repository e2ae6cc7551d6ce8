"""The nemesis's history of operations, and the checks run on it.

Every operation a client sent is recorded with its send and reply times (a
monotonic clock) and, once answered, where the ledger executed it: (slot,
index), the one order every replica applies (core/messages.py, Outcome). That
order makes the checks exact, with no search:

- replay: the answered operations sorted by (slot, index), applied from the
  initial balances with the ledger's rules, give each transfer the outcome its
  client was told (applied, or refused and why) and each read the balances it
  was shown. An acknowledged transfer applied twice or not at all, a read of a
  state that never was, a transfer applied out of order: each makes the replay
  disagree;
- real time: an operation sent after another was answered comes later in the
  log (else a read could see the past: linearizability, given the replay);
- the final balances every replica reports equal the replay's last state;
- conservation and no overdraft, in every read and at the end;
- every operation answered once the faults are healed.

Pure functions over plain records: tests/test_nemesis.py feeds them bad
histories to show that each check fires.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import attrs

from ledgerpaxos.core import ledger as rules


@attrs.define(kw_only=True)
class Op:
    """One request of one client: a transfer of `amount` from `sender` to
    `receiver`, or a read (`kind` "read")."""

    client: str
    kind: str  # "transfer" or "read"
    request_no: int
    sent_s: float
    sender: str = ""
    receiver: str = ""
    amount: int = 0
    replied_s: float | None = None  # None: never answered
    ok: bool | None = None
    reason: str | None = None
    balances: dict[str, int] | None = None  # what a read was shown
    slot: int = 0
    index: int = 0

    @property
    def answered(self) -> bool:
        return self.replied_s is not None

    @property
    def position(self) -> tuple[int, int]:
        return (self.slot, self.index)

    @property
    def latency_s(self) -> float | None:
        return None if self.replied_s is None else self.replied_s - self.sent_s


@attrs.frozen
class Verdict:
    """What the checks found: `problems` is empty when the history is valid."""

    problems: tuple[str, ...]
    checked_ops: int
    final_balances: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.problems


problems_shown_max = 20  # of each kind; the rest are counted


def check(
    ops: Sequence[Op],
    *,
    initial: Mapping[str, int],
    owners: Mapping[str, str],
    auditors: Iterable[str],
    replica_balances: Mapping[str, Mapping[str, int]],
) -> Verdict:
    """All the checks above. `owners`: account -> the client that may debit
    it; `auditors`: clients whose reads show every account;
    `replica_balances`: node -> its final balances (print_db)."""
    problems: list[str] = []
    unanswered = [op for op in ops if not op.answered]
    for op in unanswered[:problems_shown_max]:
        problems.append(f"never answered: {_describe(op)}")
    if len(unanswered) > problems_shown_max:
        problems.append(f"... and {len(unanswered) - problems_shown_max} more never answered")
    answered = sorted((op for op in ops if op.answered), key=lambda op: op.position)
    problems += _check_positions(answered)
    replayed, final = _replay(answered, initial, owners, set(auditors))
    problems += replayed
    problems += _check_real_time(answered)
    total = sum(initial.values())
    for node, balances in sorted(replica_balances.items()):
        if dict(balances) != final:
            differing = sorted(
                a for a in set(balances) | set(final) if balances.get(a) != final.get(a)
            )
            shown = ", ".join(
                f"{a}: {balances.get(a)} (replay {final.get(a)})" for a in differing[:5]
            )
            problems.append(f"{node}'s final balances differ from the replay: {shown}")
        if sum(balances.values()) != total:
            problems.append(f"{node} holds {sum(balances.values())} in all, not {total}")
        negative = sorted(a for a, b in balances.items() if b < 0)
        if negative:
            problems.append(f"{node} has overdrawn accounts: {', '.join(negative[:5])}")
    return Verdict(problems=tuple(problems), checked_ops=len(answered), final_balances=final)


def _check_positions(answered: Sequence[Op]) -> list[str]:
    """Two different requests never share a place in the log."""
    problems = []
    for before, after in itertools.pairwise(answered):
        if before.position == after.position:
            problems.append(
                f"slot {after.slot} index {after.index} holds two requests: "
                f"{_describe(before)} and {_describe(after)}"
            )
    return problems[:problems_shown_max]


def _replay(
    answered: Sequence[Op],
    initial: Mapping[str, int],
    owners: Mapping[str, str],
    auditors: set[str],
) -> tuple[list[str], dict[str, int]]:
    balances = dict(initial)
    problems: list[str] = []
    total = sum(initial.values())
    for op in answered:
        if op.kind == "read":
            shown = (
                balances
                if op.client in auditors
                else {a: b for a, b in balances.items() if owners.get(a) == op.client}
            )
            if op.balances != shown:
                differing = sorted(
                    a
                    for a in set(shown) | set(op.balances or {})
                    if shown.get(a) != (op.balances or {}).get(a)
                )
                detail = ", ".join(
                    f"{a}: {(op.balances or {}).get(a)} (log order: {shown.get(a)})"
                    for a in differing[:5]
                )
                problems.append(f"{_describe(op)} saw a state that never was: {detail}")
            elif op.client in auditors and sum(shown.values()) != total:
                problems.append(f"{_describe(op)} saw {sum(shown.values())} in all, not {total}")
            continue
        reason = _refusal(op, balances, owners)
        if reason is None:
            balances[op.sender] -= op.amount
            balances[op.receiver] += op.amount
        if (op.ok, op.reason) != (reason is None, reason):
            told = "applied" if op.ok else f"refused ({op.reason})"
            should = "applied" if reason is None else f"refused ({reason})"
            problems.append(f"{_describe(op)} was {told}; in log order it is {should}")
        if len(problems) >= problems_shown_max:
            problems.append("... stopped replaying after that many problems")
            break
    return problems, balances


def _refusal(op: Op, balances: Mapping[str, int], owners: Mapping[str, str]) -> str | None:
    """The ledger's rules (core/ledger.py) for one transfer, in its order."""
    if op.amount <= 0:
        return rules.REASON_AMOUNT
    if op.sender not in balances:
        return rules.REASON_UNKNOWN_SENDER
    if op.receiver not in balances:
        return rules.REASON_UNKNOWN_RECEIVER
    if owners.get(op.sender) != op.client:
        return rules.REASON_NOT_AUTHORIZED
    if op.sender == op.receiver:
        return rules.REASON_SAME_ACCOUNT
    if balances[op.sender] < op.amount:
        return rules.REASON_INSUFFICIENT
    return None


def _check_real_time(answered: Sequence[Op]) -> list[str]:
    """No operation is placed before one that was answered before it was sent."""
    problems = []
    earliest_reply_after: tuple[float, Op] | None = None  # among later positions
    for op in reversed(answered):
        if earliest_reply_after is not None and earliest_reply_after[0] < op.sent_s:
            later = earliest_reply_after[1]
            problems.append(
                f"{_describe(op)} was sent {op.sent_s - later.sent_s:.3f} s after "
                f"{_describe(later)} was sent and after it was answered, yet comes before it "
                "in the log"
            )
            if len(problems) >= problems_shown_max:
                break
        assert op.replied_s is not None
        if earliest_reply_after is None or op.replied_s < earliest_reply_after[0]:
            earliest_reply_after = (op.replied_s, op)
    return problems


def _describe(op: Op) -> str:
    what = "read" if op.kind == "read" else f"transfer {op.sender}->{op.receiver} {op.amount}"
    where = f" at slot {op.slot}.{op.index}" if op.answered else ""
    return f"{op.client}#{op.request_no} {what}{where}"
