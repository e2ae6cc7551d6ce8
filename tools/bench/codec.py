"""Micro-benchmark of the wire codec on the hot path: µs per command and per transfer.

    python -m tools.bench.codec

Encodes and decodes batches, the hot frames and a WAL accept record with the
public `wire` API only, so the same script measures an older tree too (run it
with that tree first on PYTHONPATH). Encodings remembered by identity (see
wire/batch.py) are forgotten before every encode and decode: the figures are
cold (forgetting is included; it costs well under a microsecond).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable

import wire
from ledgerpaxos.core import messages as m


def _forget() -> None:
    # getattr: this tool also measures older trees, which remember less.
    module = getattr(wire, "batch", None)
    forget = getattr(module, "forget_recent", None)
    if forget is not None:
        forget()
    elif (recent := getattr(module, "_recent", None)) is not None:
        recent.clear()


def _command(i: int, transfers: int) -> m.Command:
    return m.Command(
        client_id=f"bench-{i}",
        request_no=1_700_000_000_000_000 + i,
        kind=m.CommandKind.transfer,
        session=65_536 * 1_000 + i,
        transfers=tuple(
            m.Transfer(sender=f"acct{j % 1000}", receiver=f"acct{(j + 7) % 1000}", amount=j + 1)
            for j in range(transfers)
        ),
    )


def _time(operation: Callable[[], object], budget_s: float = 0.3) -> float:
    """Seconds per call (best of a few rounds)."""
    calls, best = 1, float("inf")
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            operation()
        elapsed = time.perf_counter() - start
        if elapsed > budget_s / 5:
            best = min(best, elapsed / calls)
            break
        calls *= 2
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            operation()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def measure() -> list[tuple[str, float, float, int, int]]:
    """(what, encode s, decode s, commands, transfers) per case."""
    rows = []
    for commands, transfers in ((1, 1), (64, 1), (64, 100)):
        batch = tuple(_command(i, transfers) for i in range(commands))

        def encode(batch: m.Batch = batch) -> bytes:
            _forget()
            stream = io.BytesIO()
            wire.write_batch(batch, stream)
            return stream.getvalue()

        data = encode()

        def decode(data: bytes = data) -> m.Batch:
            _forget()
            return wire.read_batch(io.BytesIO(data))

        assert decode() == batch
        rows.append(
            (
                f"batch {commands}x{transfers}",
                _time(encode),
                _time(decode),
                commands,
                commands * transfers,
            )
        )
    ballot = m.Ballot(3, 1)
    one = _command(1, 1)
    hundred = _command(1, 100)
    ok = m.TransferResult(ok=True)
    frames: list[tuple[str, m.Message, int, int]] = [
        ("ClientRequest 1", m.ClientRequest(command=one), 1, 1),
        ("ClientRequest 100", m.ClientRequest(command=hundred), 1, 100),
        (
            "ClientReply 1",
            m.ClientReply(
                client_id="bench-1", request_no=5, outcome=m.Outcome(results=(ok,)), leader="n1"
            ),
            1,
            1,
        ),
        (
            "ClientReply 100",
            m.ClientReply(
                client_id="bench-1",
                request_no=5,
                outcome=m.Outcome(results=(ok,) * 100),
                leader="n1",
            ),
            1,
            100,
        ),
        (
            "Accept 64x1",
            m.Accept(
                ballot=ballot,
                slot=10,
                commit_slot=9,
                commit_chain=bytes(16),
                purge_slot=0,
                batch=tuple(_command(i, 1) for i in range(64)),
            ),
            64,
            64,
        ),
        ("Accepted", m.Accepted(ballot=ballot, slot=10, digest=bytes(16)), 0, 0),
        (
            "Heartbeat",
            m.Heartbeat(ballot=ballot, commit_slot=9, commit_chain=bytes(16), purge_slot=0),
            0,
            0,
        ),
    ]
    for name, message, commands, transfers in frames:

        def encode_frame(message: m.Message = message) -> bytes:
            _forget()
            return wire.encode_frame(message, cluster_id=1, sender=1)

        frame = encode_frame()

        def decode_frame(frame: bytes = frame) -> object:
            _forget()
            return wire.decode_frame(frame, cluster_id=1)

        assert decode_frame()[1] == message  # type: ignore[index]
        rows.append(
            (f"frame {name}", _time(encode_frame), _time(decode_frame), commands, transfers)
        )
    record = m.AcceptRecord(
        entry=m.LogEntry(slot=1, ballot=ballot, batch=tuple(_command(i, 100) for i in range(64)))
    )

    def encode_record() -> bytes:
        _forget()
        return wire.encode_record(record)

    body = encode_record()
    rows.append(
        (
            "WAL record 64x100",
            _time(encode_record),
            _time(lambda: wire.decode_record(body)),
            64,
            6400,
        )
    )
    return rows


def main() -> int:
    print(f"{'':24} {'encode µs':>10} {'decode µs':>10} {'µs/command':>11} {'µs/transfer':>12}")
    for what, encode_s, decode_s, commands, transfers in measure():
        both = (encode_s + decode_s) * 1e6
        per_command = f"{both / commands:.2f}" if commands else "-"
        per_transfer = f"{both / transfers:.2f}" if transfers else "-"
        print(
            f"{what:24} {encode_s * 1e6:10.1f} {decode_s * 1e6:10.1f} {per_command:>11} {per_transfer:>12}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
