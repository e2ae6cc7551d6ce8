"""The seed's CSV test sets against an in-process cluster, checked after every set."""

from __future__ import annotations

from pathlib import Path

import trio

from ledgerpaxos.testsets.driver import Driver
from ledgerpaxos.testsets.parser import load_test_sets
from tests.conftest import open_cluster

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
ACCOUNTS = "ABCDEFGHIJ"
WAIT_S = 5.0


def row(text: str) -> dict[str, int]:
    return dict(zip(ACCOUNTS, (int(x) for x in text.split()), strict=True))


EXPECTED_TEST_CSV = {
    1: row("7 6 9 11 14 8 12 8 12 13"),
    2: row("7 4 13 11 14 8 12 8 14 9"),
    3: row("9 1 11 11 14 11 12 8 14 9"),
    4: row("6 1 11 11 14 11 12 11 14 9"),
    5: row("6 1 11 11 14 11 12 11 14 9"),
    6: row("2 6 10 11 12 13 12 11 12 11"),
    7: row("6 6 10 11 12 11 11 12 12 9"),
    8: row("9 8 8 13 9 11 9 14 10 9"),
    9: row("10 9 5 14 8 9 7 17 12 9"),
    10: row("10 9 5 14 8 9 7 17 12 9"),
}


async def run_file(tmp_path: Path, name: str, expected: dict[int, dict[str, int]]) -> None:
    async with open_cluster(tmp_path) as cluster:
        sets = load_test_sets(TESTDATA / name, accounts=ACCOUNTS, node_ids=cluster.node_ids)
        async with trio.open_nursery() as nursery:
            driver = Driver(cluster.config, nursery, network=cluster.network)
            driver.load(sets)
            for test_set in sets:
                report = await driver.run_next(wait_s=WAIT_S)
                want = expected.get(test_set.number, expected.get(-1))
                for node in test_set.live_nodes:
                    if node in report.killed:
                        continue
                    got = (await cluster.control(node, "print_db"))["balances"]
                    assert got == want, (name, test_set.number, node, got, want)
                if name == "test.csv" and test_set.number == 4:
                    reasons = [r.reply.reason for r in report.finished if not r.reply.ok]
                    assert reasons == ["insufficient funds"]  # B→F 3
                if name == "test.csv" and test_set.number in (5, 8):
                    assert not report.done and len(report.pending) == 2
                else:
                    assert report.done and not report.pending
            # Everyone alive again: every replica, also those revived after missing
            # several checkpoints, shows the same balances.
            await driver.apply_live_nodes(cluster.node_ids)
            final = expected[max(s.number for s in sets)]
            await cluster.wait_until(
                lambda: all(cluster.replicas[n].core.balances() == final for n in cluster.node_ids),
                what="all replicas converging",
                timeout_s=10,
            )
            await driver.aclose()
            nursery.cancel_scope.cancel()


async def test_test_csv_every_set(tmp_path: Path, autojump_clock: object) -> None:
    await run_file(tmp_path, "test.csv", EXPECTED_TEST_CSV)


async def test_concurrent_csv(tmp_path: Path, autojump_clock: object) -> None:
    await run_file(tmp_path, "concurrent.csv", {1: row("9 9 11 9 17 9 9 9 9 9")})


async def test_single_csv(tmp_path: Path, autojump_clock: object) -> None:
    await run_file(tmp_path, "single.csv", {1: row("0 10 11 10 19 10 10 10 10 10")})
