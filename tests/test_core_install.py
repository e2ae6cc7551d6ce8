"""A checkpoint installed in parts (core/install.py): bounded parts, the same
cut at every replica, and an install that resumes from the next leader."""

from __future__ import annotations

import random

import attrs

from ledgerpaxos.core import install
from ledgerpaxos.core.messages import (
    CatchupRequest,
    ClientEntry,
    InstallCheckpoint,
    Outcome,
    Snapshot,
    TransferResult,
)
from tests.corenet import CoreNet


def _snapshot(rng: random.Random) -> Snapshot:
    balances = [(f"acct{i:03}", rng.randrange(100)) for i in range(40)]
    opened = [(f"new{i}", f"c{i}", 0) for i in range(7)]
    sessions = [
        ClientEntry(
            client_id=f"c{i}",
            request_no=1,
            outcome=Outcome(results=(TransferResult(ok=True),) * (i % 9), slot=i // 3, index=i % 3),
        )
        for i in range(30)
    ]
    return Snapshot(
        slot=50,
        balances=tuple(balances),
        opened=tuple(opened),
        clients=tuple(sessions),
        digest=bytes(32),
        chain=bytes(16),
    )


def test_every_replica_cuts_a_checkpoint_into_the_same_bounded_parts() -> None:
    rng = random.Random(5)
    ordered = _snapshot(rng)
    # Another replica holds the same rows in another order (opened accounts
    # keep their opening order: it is the log's).
    shuffled = attrs.evolve(
        ordered,
        balances=tuple(rng.sample(ordered.balances, len(ordered.balances))),
        clients=tuple(rng.sample(ordered.clients, len(ordered.clients))),
    )
    parts = install.split(ordered, 6)
    assert install.split(shuffled, 6) == parts
    assert len(parts) > 10
    for part in parts:
        units = (
            len(part.balances)
            + len(part.opened)
            + sum(1 + len(c.outcome.results) // 4 for c in part.clients)
        )
        assert units <= 6
        assert (part.slot, part.digest, part.chain) == (ordered.slot, ordered.digest, ordered.chain)
    # Together the parts are the rows, each once.
    assert sorted(b for p in parts for b in p.balances) == sorted(ordered.balances)
    assert [o for p in parts for o in p.opened] == list(ordered.opened)
    assert sorted(c.client_id for p in parts for c in p.clients) == sorted(
        c.client_id for c in ordered.clients
    )
    assert install.split(attrs.evolve(ordered, balances=(), opened=(), clients=()), 6) == (
        attrs.evolve(ordered, balances=(), opened=(), clients=()),
    )


def test_a_checkpoint_installed_in_parts_resumes_from_the_new_leader() -> None:
    """The lagging replica gets some parts from the leader, which dies; it asks
    the next leader for the part it reached, not the first, and the state it
    installs is the cluster's."""
    net = CoreNet(install_part_units_max=2)
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    lagger = next(n for n in net.ids if n != leader)
    net.crash(lagger)
    for i, client in enumerate("ABCDEFGHIJ" * 3):
        net.submit(leader, client, [(client, "ABCDEFGHIJ"[(i + 3) % 10], 1)])
        net.run(3)
    net.run(20)
    assert net.cores[leader].purge_slot >= 20  # the lagger's slots are gone: it installs

    sent: list[tuple[str, str, object]] = []  # (from, to, message)
    for node in net.ids:
        net.watchers[node].append(
            lambda ready, node=node: sent.extend((node, to, m) for to, m in ready.send)
        )
    events: list[str] = []
    net.watchers[lagger].append(lambda ready: events.extend(ready.events))
    installing = net.cores[lagger]

    def leader_dies_midway(to: str, sender: str | None, message: object) -> bool:
        partial = installing.installing
        if sender == leader and partial is not None and partial.received >= 3:
            net.crash(leader)
            return True
        return False

    net.drop = leader_dies_midway
    net.alive.add(lagger)
    net.run_until(lambda: leader not in net.alive, 500)
    reached = installing.installing
    assert reached is not None and 3 <= reached.received < reached.parts
    slot, part = reached.slot, reached.received  # the partial install goes on in place
    net.drop = lambda to, sender, message: False
    net.run_until(lambda: installing.status().executed_slot >= slot, 2000)

    new_leader = net.leader()
    assert new_leader is not None and new_leader != leader
    parts_from_new = [
        m.part
        for frm, to, m in sent
        if frm == new_leader and to == lagger and isinstance(m, InstallCheckpoint)
    ]
    assert parts_from_new and min(parts_from_new) == part, parts_from_new
    asked = [
        m
        for frm, to, m in sent
        if frm == lagger and to == new_leader and isinstance(m, CatchupRequest)
    ]
    assert asked[0].install_slot == slot and asked[0].part == part
    assert any("parts), resumed from another replica" in e for e in events), events
    survivors = [n for n in net.ids if n != leader]
    net.run(50)
    for node in survivors:
        assert net.cores[node].balances() == net.cores[new_leader].balances()
    assert not net.alarms
    net.check_agreement()


def test_parts_out_of_turn_or_out_of_range_do_nothing() -> None:
    net = CoreNet(install_part_units_max=2)
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    lagger = next(n for n in net.ids if n != leader)
    net.crash(lagger)
    for client in "ABCDEF" * 4:
        net.submit(leader, client, [(client, "J", 1)])
        net.run(3)
    net.run(20)
    core = net.cores[lagger]
    snapshot = net.cores[leader].last_snapshot
    assert snapshot is not None
    parts = install.split(snapshot, 2)
    core.catchup_source, core.catchup_nonce = leader, 9
    # Part 2 before part 0: ignored, nothing kept.
    core.step(InstallCheckpoint(snapshot=parts[2], nonce=9, part=2, parts=len(parts)), leader)
    assert core.installing is None and core.take_ready().alarms == []
    # A part number beyond the parts: refused at the boundary.
    core.step(InstallCheckpoint(snapshot=parts[0], nonce=9, part=5, parts=5), leader)
    assert core.take_ready().alarms == [
        f"refused InstallCheckpoint from {leader}: part 5 of 5: parts count from 0, at most 1048576"
    ]
    # Parts 0 and 1, then part 0 again (duplicated on the way): kept once; the
    # next one asked for is part 2.
    for part in (0, 1, 0):
        core.step(
            InstallCheckpoint(snapshot=parts[part], nonce=9, part=part, parts=len(parts)), leader
        )
        core.catchup_nonce = 9
    assert core.installing is not None and core.installing.received == 2
    asks = [m for _, m in core.take_ready().send if isinstance(m, CatchupRequest)]
    assert asks and asks[-1].install_slot == snapshot.slot and asks[-1].part == 2
