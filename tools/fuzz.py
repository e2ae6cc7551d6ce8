"""ledgerpaxos-fuzz: mutated frames against real replica processes, TLS on.

    ledgerpaxos-fuzz --peer-frames 100000 --client-frames 1000000

Launches three replicas (tools/bench/cluster.py), keeps a load of honest
clients running, then sends:

- peer frames over connections authenticated with a node's certificate (the
  most an attacker with a stolen node key, or a faulty peer, can reach):
  messages of every kind built around the cluster's current ballot and slots,
  with fields mutated (extreme integers, ballots a round off, other slots,
  other accounts, cut or repeated tuples), some with bytes of the body
  flipped; checksums always valid, so every frame reaches the decoder and,
  when it decodes, the core's validation;
- client frames over connections authenticated with a client's certificate:
  requests and control questions with mutated fields and bytes.

A connection the replica closes (it refused a frame) is opened again. At the
end: every process alive, the honest clients' transfers acknowledged, and
every replica with the same balances, the money conserved and the same
state digest at every checkpoint they share. The exit status is 1 when one
of these fails. Not part of `make test` at these sizes (tests/test_fuzz.py
runs a small one); `make fuzz` runs the issue's sizes.
"""

from __future__ import annotations

import argparse
import enum
import random
import struct
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import wire
from ledgerpaxos import replicas, tls
from ledgerpaxos.client import connect_as, open_client
from ledgerpaxos.config import Config
from ledgerpaxos.core import messages as m
from tools.bench.cluster import LaunchedCluster
from tools.cluster.launcher import wait_until_answering

honest_clients = 4
byte_mutation_share = 0.1  # frames whose body bytes are flipped rather than their fields
frames_per_send = 32
view_refresh_frames = 2_000  # frames between two looks at the cluster's ballot and slots
settle_timeout_s = 60.0

_HEADER = struct.Struct(">IBIBBII")  # the checked header fields (wire/frame.py)
_INTERESTING = (0, 1, 2, 2**8, 2**16, 2**32 - 1, 2**32, 2**48, 2**48 + 1, 2**63, 2**64 - 1)


@attrs.frozen
class View:
    """What the frames are built around: the cluster as it is now."""

    round: int
    nodes: int
    commit_slot: int
    checkpoint_slot: int
    accounts: tuple[str, ...]


class Mutator:
    """Builds plausible messages and mutates them, field by field or byte by byte."""

    def __init__(self, rng: random.Random, view: View) -> None:
        self.rng = rng
        self.view = view

    # ---------------------------------------------------------------- values

    def integer(self, near: int) -> int:
        rng = self.rng
        pick = rng.random()
        if pick < 0.4:
            return max(0, near + rng.randint(-3, 3))
        if pick < 0.7:
            return rng.choice(_INTERESTING)
        return rng.getrandbits(rng.choice((8, 16, 32, 64)))

    def ballot(self) -> m.Ballot:
        rng = self.rng
        return m.Ballot(
            max(0, self.view.round + rng.randint(-1, 2)), rng.randint(0, self.view.nodes + 1)
        )

    def slot(self) -> int:
        return max(0, self.view.commit_slot + self.rng.randint(-4, 4))

    def digest(self) -> bytes:
        """A digest or chain digest: it cannot know the cluster's, so a guess."""
        if self.rng.random() < 0.9:
            return self.rng.randbytes(16)
        return self.rng.choice((b"", bytes(16), self.rng.randbytes(32)))

    def account(self) -> str:
        if self.rng.random() < 0.9:
            return self.rng.choice(self.view.accounts)
        return self.rng.choice(("", "nobody", "x" * 32, "é", "A B"))

    def command(self, client_id: str) -> m.Command:
        rng = self.rng
        if rng.random() < 0.2:
            return m.Command(
                client_id=client_id,
                request_no=self.integer(1),
                kind=m.CommandKind.read,
                transfers=(),
            )
        transfers = tuple(
            m.Transfer(
                sender=self.account(), receiver=self.account(), amount=self.integer(1) % 2**63
            )
            for _ in range(rng.randint(1, 4))
        )
        return m.Command(
            client_id=client_id,
            request_no=self.integer(rng.getrandbits(32)),
            kind=m.CommandKind.transfer,
            session=self.integer(rng.getrandbits(40)),
            transfers=transfers,
        )

    def batch(self) -> tuple[m.Command, ...]:
        return tuple(
            self.command(f"c{self.rng.randint(0, 9)}") for _ in range(self.rng.randint(0, 3))
        )

    def entry(self) -> m.LogEntry:
        return m.LogEntry(slot=self.slot(), ballot=self.ballot(), batch=self.batch())

    def entries(self) -> tuple[m.LogEntry, ...]:
        return tuple(self.entry() for _ in range(self.rng.randint(0, 3)))

    def snapshot(self) -> m.Snapshot:
        from ledgerpaxos.core.ledger import state_digest

        balances = tuple((a, self.rng.randint(0, 100)) for a in sorted(set(self.view.accounts)))
        slot = max(0, self.view.checkpoint_slot + self.rng.randint(-10, 20))
        snapshot = m.Snapshot(
            slot=slot, balances=balances, clients=(), digest=bytes(32), chain=self.digest()
        )
        if self.rng.random() < 0.5:  # a digest that matches, or one that does not
            snapshot = attrs.evolve(
                snapshot, digest=state_digest(snapshot, self.rng.randint(0, 100))
            )
        return snapshot

    # ---------------------------------------------------------------- messages

    def peer_message(self) -> m.PeerMessage:
        rng = self.rng
        kind = rng.randrange(15)
        if kind == 0:
            return m.PreVote(ballot=self.ballot())
        if kind == 1:
            return m.PreVoteReply(ballot=self.ballot(), granted=rng.random() < 0.5)
        if kind == 2:
            return m.Prepare(ballot=self.ballot())
        if kind == 3:
            return m.Promise(
                ballot=self.ballot(),
                checkpoint_slot=self.view.checkpoint_slot,
                commit_slot=self.slot(),
                entries=self.entries(),
            )
        if kind == 4:
            return m.Accept(
                ballot=self.ballot(),
                slot=self.slot(),
                batch=self.batch(),
                commit_slot=self.slot(),
                commit_chain=self.digest(),
                purge_slot=self.view.checkpoint_slot,
            )
        if kind in (5, 13):  # the same fields: a new view, a lazy follower's backlog
            many = m.NewView if kind == 5 else m.AcceptMany
            return many(
                ballot=self.ballot(),
                entries=self.entries(),
                commit_slot=self.slot(),
                commit_chain=self.digest(),
                purge_slot=self.view.checkpoint_slot,
            )
        if kind == 6:
            return m.Accepted(ballot=self.ballot(), slot=self.slot(), digest=self.digest())
        if kind == 7:
            return m.Nack(ballot=self.ballot(), promised=self.ballot())
        if kind == 8:
            return m.Heartbeat(
                ballot=self.ballot(),
                commit_slot=self.slot(),
                commit_chain=self.digest(),
                purge_slot=self.view.checkpoint_slot,
            )
        if kind == 9:
            return m.HeartbeatAck(
                ballot=self.ballot(),
                executed_slot=self.slot(),
                checkpoint_slot=self.view.checkpoint_slot,
                checkpoint_digest=rng.randbytes(32),
            )
        if kind == 10:
            return m.CatchupRequest(after_slot=self.slot(), nonce=self.integer(0))
        if kind == 11:
            return m.CatchupReply(
                entries=self.entries(),
                commit_slot=self.slot(),
                chain=self.digest(),
                nonce=self.integer(0),
            )
        if kind == 14:
            votes = tuple((self.slot(), self.digest()) for _ in range(rng.randint(0, 3)))
            return m.AcceptedMany(ballot=self.ballot(), votes=votes)
        return m.InstallCheckpoint(snapshot=self.snapshot(), nonce=self.integer(0))  # 12

    def client_message(self, client_id: str) -> m.ClientRequest | m.ControlRequest:
        if self.rng.random() < 0.1:
            return m.ControlRequest(op=self.rng.choice(list(m.ControlOp)), argument=self.integer(0))
        return m.ClientRequest(command=self.command(client_id))

    # ---------------------------------------------------------------- mutations

    def mutate(self, value: Any, depth: int = 0) -> Any:
        """`value` with one thing in it changed (a field, an element, a number)."""
        rng = self.rng
        if isinstance(value, bool):
            return not value
        if isinstance(value, enum.IntEnum):
            return rng.choice(list(type(value)))
        if isinstance(value, int):
            return self.integer(value)
        if isinstance(value, bytes):
            return rng.choice((b"", rng.randbytes(32), rng.randbytes(rng.randint(1, 64))))
        if isinstance(value, str):
            return self.account()
        if isinstance(value, tuple):
            if not value or rng.random() < 0.3:
                return value + value[:1] if value and rng.random() < 0.5 else value[:-1]
            i = rng.randrange(len(value))
            return (*value[:i], self.mutate(value[i], depth + 1), *value[i + 1 :])
        if attrs.has(type(value)) and depth < 4:
            fields = attrs.fields(type(value))
            field = rng.choice(fields)
            return attrs.evolve(
                value, **{field.name: self.mutate(getattr(value, field.name), depth + 1)}
            )
        return value

    def frame(self, make: Callable[[Mutator], m.Message], *, cluster_id: int, sender: int) -> bytes:
        """One frame of a made message with valid checksums: fields mutated,
        or (byte_mutation_share of them) body bytes flipped."""
        rng = self.rng
        while True:
            message = make(self)
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                message = self.mutate(message)
            try:
                frame = wire.encode_frame(message, cluster_id=cluster_id, sender=sender)
            except ValueError:
                continue  # a mutation the wire cannot carry: draw again
            if rng.random() >= byte_mutation_share:
                return frame
            return flip_body_bytes(frame, rng)


def flip_body_bytes(frame: bytes, rng: random.Random) -> bytes:
    """`frame` with some body bytes changed, its length and checksums made valid."""
    head, body = frame[: wire.HEADER_SIZE], bytearray(frame[wire.HEADER_SIZE :])
    for _ in range(rng.randint(1, 4)):
        if body and rng.random() < 0.8:
            body[rng.randrange(len(body))] = rng.randrange(256)
        elif body:
            del body[rng.randrange(len(body)) :]
    magic, version, cluster_id, message_type, sender, _, _ = _HEADER.unpack(head[: _HEADER.size])
    fields = _HEADER.pack(
        magic, version, cluster_id, message_type, sender, len(body), zlib.crc32(body)
    )
    return fields + struct.pack(">I", zlib.crc32(fields)) + bytes(body)


# ---------------------------------------------------------------- the run


@attrs.define
class Counts:
    sent: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    honest_acknowledged: int = 0  # the honest clients' transfers meanwhile


@attrs.define
class Honest:
    acknowledged: int = 0
    refused: int = 0
    timeouts: int = 0


async def look(config: Config) -> View:
    """The cluster's ballot and slots now, from any replica that answers."""
    views = await replicas.ask_all(config, m.ControlOp.print_view)
    answered = [a.body for a in views.values() if a.body is not None]
    if not answered:
        return View(1, len(config.nodes), 0, 0, tuple(config.accounts))
    round_ = max(int(v["ballot"].split(".")[0]) for v in answered)
    return View(
        round=round_,
        nodes=len(config.nodes),
        commit_slot=max(v["commit_slot"] for v in answered),
        checkpoint_slot=max(v["checkpoint_slot"] for v in answered),
        accounts=tuple(config.accounts),
    )


async def drain(stream: trio.abc.Stream) -> None:
    """Read and drop whatever the replica answers (a client that reads)."""
    try:
        while await stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


@attrs.frozen
class Phase:
    """One kind of attacker: who it poses as, whom it sends to, what it sends."""

    label: str
    targets: tuple[str, ...]
    identity: tls.Identity
    sender: int  # the frames' header sender: the posed node's index, 0 for a client
    message: Callable[[Mutator], m.Message]
    follow_view: bool  # look at the cluster again every view_refresh_frames


async def run_phase(
    config: Config,
    phase: Phase,
    total: int,
    rng: random.Random,
    honest: Honest,
    console: Console,
) -> Counts:
    """`total` frames of `phase`, spread over its targets, reconnecting when
    a replica closes a connection, with a progress bar."""
    counts = Counts()
    mutator = Mutator(rng, await look(config))
    acknowledged = honest.acknowledged
    began = time.perf_counter()
    since_look = 0
    open_streams: dict[str, trio.abc.Stream] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(phase.label, total=total)
        async with trio.open_nursery() as nursery:
            while counts.sent < total:
                if phase.follow_view and since_look >= view_refresh_frames:
                    mutator.view, since_look = await look(config), 0
                target = rng.choice(phase.targets)
                stream = open_streams.get(target)
                if stream is None:
                    try:
                        stream = await connect_as(config, target, phase.identity)
                    except OSError:
                        await trio.sleep(0.05)
                        continue
                    open_streams[target] = stream
                    nursery.start_soon(drain, stream)
                count = min(frames_per_send, total - counts.sent)
                data = b"".join(
                    mutator.frame(phase.message, cluster_id=config.cluster_id, sender=phase.sender)
                    for _ in range(count)
                )
                try:
                    await stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    del open_streams[target]
                    counts.reconnects += 1
                    await stream.aclose()
                    continue
                counts.sent += count
                since_look += count
                progress.advance(task, count)
            for stream in open_streams.values():
                await stream.aclose()
    counts.seconds = time.perf_counter() - began
    counts.honest_acknowledged = honest.acknowledged - acknowledged
    return counts


async def honest_load(config: Config, client_id: str, honest: Honest) -> None:
    """Transfers of 1 from the client's own account, one at a time, until cancelled."""
    accounts = config.accounts
    rng = random.Random(client_id)
    async with open_client(config, client_id) as client:
        while True:
            receiver = rng.choice([a for a in accounts if a != client_id])
            try:
                reply = await client.transfer(client_id, receiver, 1)
            except Exception:  # a timeout under attack is counted, not fatal
                honest.timeouts += 1
                await trio.sleep(0.1)
                continue
            if reply.ok:
                honest.acknowledged += 1
            else:
                honest.refused += 1


@attrs.frozen
class Verdict:
    alive: bool
    exited: dict[str, int]
    balances_agree: bool
    money_conserved: bool
    digests_compared: int  # checkpoints that two replicas or more remember
    digests_agree: bool
    errors_logged: int
    views: dict[str, str]  # each replica's role, ballot and slots, for a failed verdict

    @property
    def passed(self) -> bool:
        return self.alive and self.balances_agree and self.money_conserved and self.digests_agree


async def judge(cluster: LaunchedCluster, expected_total: int) -> Verdict:
    config = cluster.config
    exited = cluster.exited()
    # Quiet: wait until every replica shows the same balances.
    dbs: list[dict[str, int]] = []
    with trio.move_on_after(settle_timeout_s):
        while True:
            answers = await replicas.ask_all(config, m.ControlOp.print_db)
            dbs = [a.body["balances"] for a in answers.values() if a.body is not None]
            if len(dbs) == len(config.nodes) and all(db == dbs[0] for db in dbs):
                break
            await trio.sleep(0.2)
    views = await replicas.ask_all(config, m.ControlOp.print_view)
    described = {
        node: (
            f"{a.body['role']} in {a.body['ballot']} (leader {a.body['leader']}), promised "
            f"{a.body['promised']}, commit {a.body['commit_slot']}, executed "
            f"{a.body['executed_slot']}, checkpoint {a.body['checkpoint_slot']}"
            if a.body is not None
            else f"no answer: {a.error}"
        )
        for node, a in views.items()
    }
    digests: dict[str, list[str]] = {}
    for answer in views.values():
        if answer.body is not None:
            for slot, digest in answer.body["checkpoint_digests"].items():
                digests.setdefault(slot, []).append(digest)
    shared = [set(found) for found in digests.values() if len(found) > 1]
    errors = 0
    for node_id in config.node_ids:
        path = cluster.logs / f"{node_id}.log"
        if path.exists():
            errors += sum(" ERROR " in line for line in path.read_text().splitlines())
    return Verdict(
        alive=not exited,
        exited=exited,
        balances_agree=len(dbs) == len(config.nodes) and all(db == dbs[0] for db in dbs),
        money_conserved=bool(dbs) and sum(dbs[0].values()) == expected_total,
        digests_compared=len(shared),
        digests_agree=all(len(found) == 1 for found in shared),
        errors_logged=errors,
        views=described,
    )


async def run(args: argparse.Namespace, console: Console) -> int:
    rng = random.Random(args.seed)
    with LaunchedCluster(
        replicas=3,
        accounts=10,
        clients=honest_clients + 1,  # and the fuzzer's own client
        overrides={"fsync": False},
        keep_dir=args.keep,
    ) as cluster:
        if args.keep:
            console.print(f"replica data and logs in {cluster.directory} (kept)")
        config = cluster.config
        cluster.start()
        await wait_until_answering(cluster.launcher, config.node_ids)
        await replicas.wait_for_leader(config, timeout_s=30)
        db = await replicas.ask(config, config.node_ids[0], m.ControlOp.print_db)
        expected_total = sum(db["balances"].values())
        honest = Honest()
        results: dict[str, Counts] = {}
        async with trio.open_nursery() as nursery:
            for client_id in config.accounts[:honest_clients]:
                nursery.start_soon(honest_load, config, client_id, honest)
            nodes = config.node_ids
            poser = nodes[-1]  # its certificate is the attacker's
            fuzzer_client = config.accounts[honest_clients]  # not one of the honest
            phases = [
                (
                    "peer",
                    args.peer_frames,
                    Phase(
                        label="peer frames",
                        targets=tuple(n for n in nodes if n != poser),
                        identity=tls.node(poser),
                        sender=config.index_of(poser),
                        message=Mutator.peer_message,
                        follow_view=True,
                    ),
                ),
                (
                    "client",
                    args.client_frames,
                    Phase(
                        label="client frames",
                        targets=nodes,
                        identity=tls.client(fuzzer_client),
                        sender=0,
                        message=lambda mutator: mutator.client_message(fuzzer_client),
                        follow_view=False,
                    ),
                ),
            ]
            for kind, total, phase in phases:
                if total:
                    results[kind] = await run_phase(config, phase, total, rng, honest, console)
            before = honest.acknowledged
            with trio.move_on_after(settle_timeout_s):
                while honest.acknowledged < before + 10:  # the honest go on afterwards
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        verdict = await judge(cluster, expected_total)
        report(console, results, honest, verdict)
        passed = verdict.passed and honest.acknowledged >= before + 10
        if not passed:
            for node, described in verdict.views.items():
                console.print(f"  {node}: {described}")
            cluster.keep_dir = True
            console.print(f"replica data and logs kept in {cluster.directory}")
        return 0 if passed else 1


def report(console: Console, results: dict[str, Counts], honest: Honest, verdict: Verdict) -> None:
    table = Table(title="ledgerpaxos-fuzz")
    table.add_column("frames")
    table.add_column("sent", justify="right")
    table.add_column("connections closed by a replica", justify="right")
    table.add_column("frames/s", justify="right")
    table.add_column("honest transfers meanwhile", justify="right")
    for kind, counts in results.items():
        rate = counts.sent / counts.seconds if counts.seconds else 0.0
        table.add_row(
            kind,
            f"{counts.sent:,}",
            f"{counts.reconnects:,}",
            f"{rate:,.0f}",
            f"{counts.honest_acknowledged:,} in {counts.seconds:.0f} s",
        )
    console.print(table)
    console.print(
        f"honest clients: {honest.acknowledged:,} transfers acknowledged, "
        f"{honest.refused:,} refused, {honest.timeouts:,} timed out"
    )
    alive = "every process alive" if verdict.alive else f"EXITED: {verdict.exited}"
    console.print(
        f"{alive}; balances {'agree' if verdict.balances_agree else 'DIFFER'}; money "
        f"{'conserved' if verdict.money_conserved else 'NOT CONSERVED'}; "
        f"{verdict.digests_compared} checkpoint digests compared, "
        f"{'all agree' if verdict.digests_agree else 'SOME DIFFER'}; "
        f"{verdict.errors_logged} errors logged"
    )
    console.print("PASSED" if verdict.passed else "FAILED")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ledgerpaxos-fuzz", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--peer-frames", type=int, default=100_000, metavar="N")
    parser.add_argument("--client-frames", type=int, default=1_000_000, metavar="N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep", action="store_true", help="keep the replicas' data and logs afterwards"
    )
    args = parser.parse_args(argv)
    if args.peer_frames < 0 or args.client_frames < 0:
        parser.error("frame counts are at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    try:
        return trio.run(run, args, console)
    except KeyboardInterrupt:
        console.print("interrupted; every replica stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
