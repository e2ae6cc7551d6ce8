"""The nemesis's history checks (tools/nemesis/history.py) fire on bad histories."""

from __future__ import annotations

import attrs

from tools.nemesis.history import Op, check
from tools.nemesis.run import FAULT_KINDS, available_kinds

INITIAL = {"c0": 10, "c1": 10}
OWNERS = {"c0": "c0", "c1": "c1"}


def transfer(client: str, no: int, receiver: str, amount: int, slot: int, **kw: object) -> Op:
    fields: dict[str, object] = {"ok": True, "reason": None}
    fields.update(kw)
    return Op(
        client=client,
        kind="transfer",
        request_no=no,
        sent_s=float(slot),
        replied_s=slot + 0.5,
        sender=client,
        receiver=receiver,
        amount=amount,
        slot=slot,
        **fields,  # type: ignore[arg-type]
    )


def read(client: str, no: int, balances: dict[str, int], slot: int) -> Op:
    return Op(
        client=client,
        kind="read",
        request_no=no,
        sent_s=float(slot),
        replied_s=slot + 0.5,
        balances=balances,
        slot=slot,
    )


def good() -> list[Op]:
    return [
        transfer("c0", 1, "c1", 4, 1),
        transfer("c1", 1, "c0", 20, 2, ok=False, reason="insufficient funds"),
        read("c1", 2, {"c1": 14}, 3),
        read("audit", 1, {"c0": 6, "c1": 14}, 4),
    ]


def verdict(ops: list[Op], final: dict[str, int] | None = None) -> list[str]:
    final = final if final is not None else {"c0": 6, "c1": 14}
    return list(
        check(
            ops,
            initial=INITIAL,
            owners=OWNERS,
            auditors=["audit"],
            replica_balances={"n1": final, "n2": final},
        ).problems
    )


def test_a_good_history_passes() -> None:
    assert verdict(good()) == []


def test_an_acknowledged_transfer_the_replicas_do_not_hold_is_caught() -> None:
    problems = verdict(good(), final={"c0": 10, "c1": 10})
    assert any("final balances differ from the replay" in p for p in problems), problems


def test_a_transfer_applied_twice_is_caught() -> None:
    problems = verdict(good(), final={"c0": 2, "c1": 18})
    assert len([p for p in problems if "differ from the replay" in p]) == 2


def test_a_read_of_a_state_that_never_was_is_caught() -> None:
    ops = good()
    ops[2] = read("c1", 2, {"c1": 10}, 3)  # the transfer of slot 1 not seen
    assert any("saw a state that never was" in p for p in verdict(ops))


def test_a_wrong_outcome_is_caught() -> None:
    ops = good()
    ops[1] = transfer("c1", 1, "c0", 20, 2)  # told applied: 14 cannot pay 20
    assert any("in log order it is refused (insufficient funds)" in p for p in verdict(ops))


def test_an_op_placed_before_one_answered_before_it_was_sent_is_caught() -> None:
    ops = good()
    # The read was sent after the transfer of slot 1 was answered, yet sits at slot 0.
    ops[2] = attrs.evolve(ops[2], slot=0, balances={"c1": 10}, sent_s=2.0, replied_s=3.0)
    assert any("comes before it in the log" in p for p in verdict(ops))


def test_unanswered_and_shared_positions_and_conservation_are_caught() -> None:
    ops = good()
    ops.append(Op(client="c0", kind="read", request_no=9, sent_s=5.0))
    ops.append(attrs.evolve(ops[0], client="c1", request_no=7, sender="c1"))
    problems = verdict(ops, final={"c0": 6, "c1": 15})
    assert any(p.startswith("never answered: c0#9") for p in problems)
    assert any("holds two requests" in p for p in problems)
    assert any("holds 21 in all, not 20" in p for p in problems)


def test_kinds_that_cannot_run_here_are_skipped_with_their_reason() -> None:
    kinds, skipped = available_kinds(no_tmpfs="no root", no_partitions="no nft")
    assert set(kinds) == {"kill", "leader-kill", "pause", "disk-lost", "wal-flip"}
    assert skipped == {
        "partition": "no nft",
        "leader-partition": "no nft",
        "one-way": "no nft",
        "bridge": "no nft",
        "disk-full": "no root",
    }
    assert available_kinds(no_tmpfs=None, no_partitions=None) == (FAULT_KINDS, {})
