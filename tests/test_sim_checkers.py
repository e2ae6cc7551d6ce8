"""The simulator's checks on small histories, good and bad, without a run.

SafetyChecker and ReferenceLedger are fed executions by hand;
check_committed_kept the end state of a run; a replica host a disk it cannot
recover. The executor's persist-before-speak audit (DurableAudit) has its
own tests in tests/test_host.py. Every bad history must fail with its
property, and pass (not crash) when that property's check is disabled.
"""

from __future__ import annotations

import random

import attrs
import pytest

from ledgerpaxos.core import Core, Executed
from ledgerpaxos.core.messages import (
    ClientReply,
    Command,
    CommandKind,
    Outcome,
    Transfer,
    TransferResult,
)
from ledgerpaxos.sim.checkers import (
    Checks,
    ReferenceLedger,
    SafetyChecker,
    Violation,
    check_committed_kept,
)
from ledgerpaxos.sim.harness import ACCOUNTS, INITIAL_BALANCE, Simulation
from ledgerpaxos.sim.replica import DOWN
from tests.corenet import settings

OK = Outcome(results=(TransferResult(ok=True),), slot=1)  # as command 0 of slot 1 gives it
ANYONE = dict.fromkeys(("c1", "c2", "c3"), ACCOUNTS)  # the clients below may debit any account
BROKE = Outcome(results=(TransferResult(ok=False, reason="insufficient funds"),))


def transfer(client: str, request_no: int, amount: int = 1) -> Command:
    return Command(
        client_id=client,
        request_no=request_no,
        kind=CommandKind.transfer,
        transfers=(Transfer(sender="A", receiver="B", amount=amount),),
    )


def executed(slot: int, *commands: Command, outcomes: tuple[Outcome | None, ...]) -> Executed:
    return Executed(slot=slot, batch=commands, outcomes=outcomes)


def registered(reference: ReferenceLedger) -> ReferenceLedger:
    """The clients below hold sessions from the start (as if registered before slot 1)."""
    for client in ANYONE:
        reference.ledger.execute(Command(client_id=client, request_no=0, kind=CommandKind.register))
    reference.digests[0] = reference.ledger.digest()
    return reference


def reference_ledger(checks: Checks | None = None) -> ReferenceLedger:
    return registered(ReferenceLedger(ACCOUNTS, INITIAL_BALANCE, checks, ANYONE))


def checker(*disabled: str) -> SafetyChecker:
    safety = SafetyChecker(ACCOUNTS, INITIAL_BALANCE, Checks(disabled), client_accounts=ANYONE)
    registered(safety.reference)
    for node in ("n1", "n2"):
        safety.process_started(node, 0)
    return safety


def violated(prop: str, action: object) -> None:
    """`action()` fails with `prop` (each test also runs it with that check off)."""
    assert callable(action)
    with pytest.raises(Violation) as caught:
        action()
    assert caught.value.property == prop, caught.value


# ---------------------------------------------------------------- the reference


def test_the_reference_replays_slots_in_order_once_the_gap_is_filled() -> None:
    reference = reference_ledger()
    assert reference.learn(2, (transfer("c1", 2),), "n1") == []  # slot 1 not known yet
    assert reference.learn(1, (transfer("c1", 1),), "n2") == [1, 2]
    assert reference.outcomes == {1: (OK,), 2: (attrs.evolve(OK, slot=2),)}
    assert reference.ledger.balance("A") == INITIAL_BALANCE - 2
    assert reference.results[("c1", 2)] == [attrs.evolve(OK, slot=2)]
    assert reference.slot_of[("c1", 2)] == 2
    assert reference.learn(1, (transfer("c1", 1),), "n1") == []  # the same batch again


def test_the_reference_applies_a_duplicate_once() -> None:
    reference = reference_ledger()
    reference.learn(1, (transfer("c1", 1),), "n1")
    reference.learn(2, (transfer("c1", 1),), "n1")
    assert reference.outcomes[2] == (None,)
    assert reference.ledger.balance("A") == INITIAL_BALANCE - 1


def test_two_batches_for_one_slot_break_agreement() -> None:
    reference = reference_ledger()
    reference.learn(1, (transfer("c1", 1),), "n1")
    violated("agreement", lambda: reference.learn(1, (transfer("c2", 1),), "n2"))
    off = reference_ledger(Checks({"agreement"}))
    off.learn(1, (transfer("c1", 1),), "n1")
    assert off.learn(1, (transfer("c2", 1),), "n2") == []
    assert off.canonical[1] == (transfer("c1", 1),)  # the first one stays the reference


# ---------------------------------------------------------------- executions


def test_a_good_history_passes() -> None:
    safety = checker()
    safety.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))
    safety.executed("n2", executed(1, transfer("c1", 1), outcomes=(OK,)))
    safety.executed("n1", executed(2, transfer("c1", 1), outcomes=(None,)))  # a duplicate
    safety.reply("c1", ClientReply(client_id="c1", request_no=1, outcome=OK, leader="n1"))
    assert safety.max_executed == 2 and safety.duplicates_skipped == 1


def test_a_slot_executed_twice_by_one_process_is_caught() -> None:
    safety = checker()
    safety.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))
    violated(
        "executed-once",
        lambda: safety.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,))),
    )
    off = checker("executed-once")
    off.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))
    off.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))
    # A restarted process starts over from its snapshot: not executed twice.
    safety.process_started("n1", 0)
    safety.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))


def test_a_duplicate_applied_again_breaks_exactly_once() -> None:
    safety = checker()
    safety.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))
    again = executed(2, transfer("c1", 1), outcomes=(OK,))  # the replay gives None
    violated("exactly-once", lambda: safety.executed("n1", again))
    checker_off = checker("exactly-once")
    checker_off.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))
    checker_off.executed("n1", again)


def test_an_outcome_other_than_the_replay_breaks_replay() -> None:
    safety = checker()
    wrong = executed(1, transfer("c1", 1), outcomes=(BROKE,))
    violated("replay", lambda: safety.executed("n1", wrong))
    checker("replay").executed("n1", wrong)


def test_an_execution_ahead_of_the_replay_is_compared_once_it_catches_up() -> None:
    safety = checker()
    safety.executed("n1", executed(2, transfer("c1", 2), outcomes=(BROKE,)))  # slot 1 unknown
    violated(
        "replay", lambda: safety.executed("n2", executed(1, transfer("c1", 1), outcomes=(OK,)))
    )


def test_another_batch_with_agreement_off_is_a_replay_failure_not_a_crash() -> None:
    safety = checker("agreement")
    safety.executed(
        "n1",
        executed(1, transfer("c1", 1), transfer("c2", 1), outcomes=(OK, attrs.evolve(OK, index=1))),
    )
    other = executed(1, transfer("c3", 1), outcomes=(OK,))  # fewer commands than the replay's
    violated("replay", lambda: safety.executed("n2", other))


# ---------------------------------------------------------------- states, checkpoints, replies


class _State:
    """The two queries SafetyChecker.state() asks of a core."""

    def __init__(self, balances: dict[str, int], digest: bytes = b"") -> None:
        self._balances, self._digest = balances, digest

    def balances(self) -> dict[str, int]:
        return dict(self._balances)

    def state_digest(self) -> bytes:
        return self._digest

    def client_request_nos(self) -> dict[str, int]:
        return {}


def _core_like(state: _State) -> Core:
    return state  # type: ignore[return-value]  # duck-typed: only the queries above


def test_the_initial_state_matches_the_replay() -> None:
    safety = SafetyChecker(ACCOUNTS, INITIAL_BALANCE, Checks(), client_accounts=ANYONE)
    safety.process_started("n1", 0)
    core = Core(settings("n1"), random.Random(1))
    safety.state("n1", core, 0)


@pytest.mark.parametrize(
    ("prop", "balances"),
    [
        ("conservation", {**dict.fromkeys(ACCOUNTS, INITIAL_BALANCE), "A": INITIAL_BALANCE + 1}),
        (
            "no-overdraft",
            {**dict.fromkeys(ACCOUNTS, INITIAL_BALANCE), "A": -1, "B": 2 * INITIAL_BALANCE + 1},
        ),
        ("replay", {**dict.fromkeys(ACCOUNTS, INITIAL_BALANCE), "A": 9, "B": 11}),
    ],
)
def test_a_bad_state_is_caught_by_its_property(prop: str, balances: dict[str, int]) -> None:
    state = _core_like(_State(balances, digest=b"not the replay's"))
    violated(prop, lambda: checker().state("n1", state, 0))
    checker(prop, "replay" if prop != "replay" else prop).state("n1", state, 0)


def test_a_state_past_the_replay_is_a_replay_failure() -> None:
    state = _core_like(_State(dict.fromkeys(ACCOUNTS, INITIAL_BALANCE)))
    violated("replay", lambda: checker().state("n1", state, 3))


def test_a_checkpoint_with_another_digest_is_caught() -> None:
    safety = checker()
    core = Core(settings("n1"), random.Random(1))
    registered_core = registered(ReferenceLedger(ACCOUNTS, INITIAL_BALANCE, None, ANYONE))
    assert core.ledger.digest() != registered_core.ledger.digest()  # sessions are state
    safety.checkpoint("n1", 0, registered_core.ledger.digest())
    violated("checkpoint", lambda: safety.checkpoint("n1", 0, bytes(32)))
    checker("checkpoint").checkpoint("n1", 0, bytes(32))


def test_a_reply_the_replay_does_not_give_is_caught() -> None:
    safety = checker()
    safety.executed("n1", executed(1, transfer("c1", 1), outcomes=(OK,)))
    wrong = ClientReply(client_id="c1", request_no=1, outcome=BROKE, leader="n1")
    never = ClientReply(client_id="c1", request_no=2, outcome=OK, leader="n1")
    violated("reply", lambda: safety.reply("c1", wrong))
    violated("reply", lambda: safety.reply("c1", never))
    checker("reply").reply("c1", never)


# ---------------------------------------------------------------- the end of a run


def test_an_answered_request_missing_from_a_converged_replica_is_caught() -> None:
    def check(replicas: dict[str, tuple[int, dict[str, int]]], *, converged: bool) -> None:
        check_committed_kept(Checks(), replicas, {"c1": 3}, 7, converged=converged)

    kept = {"n1": (7, {"c1": 3}), "n2": (7, {"c1": 4})}
    check(kept, converged=True)
    lagging = {"n1": (7, {"c1": 3}), "n2": (5, {"c1": 2})}
    check(lagging, converged=False)  # not converged: liveness reports the laggard
    violated("committed-kept", lambda: check(lagging, converged=True))
    lost = {"n1": (7, {"c1": 2}), "n2": (7, {"c1": 2})}
    violated("committed-kept", lambda: check(lost, converged=False))
    behind = {"n1": (6, {"c1": 3}), "n2": (6, {"c1": 3})}  # slot 7 executed once, now gone
    violated("committed-kept", lambda: check(behind, converged=False))
    check_committed_kept(Checks({"committed-kept"}), lost, {"c1": 3}, 7, converged=True)


def test_a_replica_that_cannot_recover_its_disk_is_caught() -> None:
    for disabled in ((), ("recovery",)):
        simulation = Simulation(0, 3, disabled=disabled)
        host = simulation.hosts["n1"]
        # A damaged WAL is salvaged (the replica rejoins); an identity file
        # that is not one stops it.
        damaged = host.disk.create(f"{host.directory}/identity.toml")
        damaged.write(b"cluster_id = [")
        damaged.fsync()
        damaged.close()
        if disabled:
            host.start()
            assert host.status == DOWN  # stays down: liveness will say so
        else:
            violated("recovery", host.start)
