"""ledgerpaxos-fuzz at a small size: its mutations reach the core and the verdict is true.

The issue's sizes (100,000 peer frames, 1,000,000 client frames) are a `make
fuzz` run reported in docs/security.md; here a few thousand of each, against
real processes (marked `processes`).
"""

from __future__ import annotations

import random

import pytest
import trio
from rich.console import Console

from tools import fuzz

pytestmark = pytest.mark.processes


def test_mutated_frames_keep_valid_checksums_and_mostly_decode() -> None:
    import wire

    view = fuzz.View(round=3, nodes=3, commit_slot=40, checkpoint_slot=30, accounts=("A", "B"))
    mutator = fuzz.Mutator(random.Random(1), view)
    kinds: set[type] = set()
    refused = 0
    for _ in range(2000):
        frame = mutator.frame(fuzz.Mutator.peer_message, cluster_id=7, sender=3)
        try:
            _, message = wire.decode_frame(frame, cluster_id=7)
        except wire.FrameError as error:
            assert "checksum" not in str(error)  # a mutation never breaks the checksums
            refused += 1
            continue
        kinds.add(type(message))
    assert len(kinds) == 15  # every peer message kind
    assert 0 < refused < 400  # some body bytes flipped, most frames reach the core


async def test_a_small_fuzz_run_leaves_every_process_alive_and_agreeing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = fuzz.parse_args(["--peer-frames", "3000", "--client-frames", "3000", "--seed", "2"])
    console = Console(width=120)
    with trio.fail_after(300):
        status = await fuzz.run(args, console)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "every process alive; balances agree; money conserved" in out
    assert "all agree" in out and "PASSED" in out
