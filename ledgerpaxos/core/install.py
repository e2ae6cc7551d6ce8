"""A checkpoint sent and installed in parts, so state of any size crosses the wire.

The sender cuts its newest snapshot into parts of at most
`install_part_units_max` rows (`split`); the receiver asks for them one at a
time, in order, and keeps what it got (`PartialInstall`) until the last part
is in; only the whole state is checked against the digest and installed.

The cut depends on the state alone, never on the order a replica happens to
hold its rows in (a replica that installed a checkpoint holds its balances in
another order than one that executed every slot): balances go by account
name, opened accounts in opening order, sessions by where they last
committed. So any replica's snapshot at the same slot cuts into the same
parts, and an install interrupted by a lost connection or a leader change
resumes at the part it reached from whoever is asked next.
"""

from __future__ import annotations

import attrs

from ledgerpaxos.core.messages import ClientEntry, InstallCheckpoint, Snapshot

# A session counts one unit more for every this many results it holds (a
# result is about as large as a balance row).
_results_per_unit = 4


def session_units(entry: ClientEntry) -> int:
    """What a session weighs in a part, in rows (storage/snapshot.py cuts by it too)."""
    return 1 + len(entry.outcome.results) // _results_per_unit


def split(snapshot: Snapshot, units_max: int) -> tuple[Snapshot, ...]:
    """`snapshot`'s rows in parts of at most `units_max` units each (a row
    larger than that alone in its part); at least one part. Each part carries
    the whole checkpoint's slot, digest and chain."""
    balances = sorted(snapshot.balances)
    sessions = sorted(
        snapshot.clients, key=lambda c: (c.outcome.slot, c.outcome.index, c.client_id)
    )
    parts: list[Snapshot] = []
    part_balances: list[tuple[str, int]] = []
    part_opened: list[tuple[str, str, int]] = []
    part_sessions: list[ClientEntry] = []
    units = 0

    def cut() -> None:
        nonlocal units, part_balances, part_opened, part_sessions
        parts.append(
            attrs.evolve(
                snapshot,
                balances=tuple(part_balances),
                opened=tuple(part_opened),
                clients=tuple(part_sessions),
            )
        )
        part_balances, part_opened, part_sessions, units = [], [], [], 0

    def fits(row_units: int) -> None:
        nonlocal units
        if units and units + row_units > units_max:
            cut()
        units += row_units

    for balance in balances:
        fits(1)
        part_balances.append(balance)
    for opened in snapshot.opened:
        fits(1)
        part_opened.append(opened)
    for session in sessions:
        fits(session_units(session))
        part_sessions.append(session)
    if units or not parts:
        cut()
    return tuple(parts)


@attrs.define
class PartialInstall:
    """The parts of one checkpoint received so far, in order."""

    slot: int
    digest: bytes
    chain: bytes
    parts: int
    source: str  # who sent the last part (for messages)
    balances: list[tuple[str, int]] = attrs.Factory(list)
    opened: list[tuple[str, str, int]] = attrs.Factory(list)
    clients: list[ClientEntry] = attrs.Factory(list)
    received: int = 0  # parts 0 .. received - 1 are in
    resumed: bool = False  # a part came from another sender than the one before

    @staticmethod
    def start(m: InstallCheckpoint, sender: str) -> PartialInstall:
        s = m.snapshot
        return PartialInstall(
            slot=s.slot, digest=s.digest, chain=s.chain, parts=m.parts, source=sender
        )

    def of_this(self, m: InstallCheckpoint) -> bool:
        """`m` is a part of this checkpoint."""
        s = m.snapshot
        return m.parts == self.parts and (s.slot, s.digest, s.chain) == (
            self.slot,
            self.digest,
            self.chain,
        )

    def continues(self, m: InstallCheckpoint) -> bool:
        """`m` is the next part of this checkpoint."""
        return m.part == self.received and self.of_this(m)

    def add(self, m: InstallCheckpoint, sender: str) -> None:
        assert self.continues(m)
        s = m.snapshot
        self.balances.extend(s.balances)
        self.opened.extend(s.opened)
        self.clients.extend(s.clients)
        self.received += 1
        if sender != self.source:
            self.resumed = True
            self.source = sender

    @property
    def complete(self) -> bool:
        return self.received == self.parts

    def whole(self) -> Snapshot:
        assert self.complete
        return Snapshot(
            slot=self.slot,
            balances=tuple(self.balances),
            opened=tuple(self.opened),
            clients=tuple(self.clients),
            digest=self.digest,
            chain=self.chain,
        )

    def rows(self) -> int:
        return len(self.balances) + len(self.opened) + len(self.clients)
