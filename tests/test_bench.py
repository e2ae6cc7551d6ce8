"""The benchmark tool's pieces: arguments, statistics, output; and the runtime
options it measures (each must keep the ledger consistent).

Figures are never asserted: timing is for `make bench`, not for tests.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

import pytest
import trio

from ledgerpaxos.client import open_client
from ledgerpaxos.config import make_local_config
from ledgerpaxos.core.messages import Transfer
from ledgerpaxos.runtime import Replica, RuntimeOptions
from ledgerpaxos.storage.identity import Start
from ledgerpaxos.testing.network import MemoryNetwork
from tools.bench import cli as bench
from tools.bench import hops, report, versus_etcd, wakeprobe
from tools.bench import profile as bench_profile
from tools.bench.cluster import TRACER, account_names, initial_balance_for
from tools.bench.load import LoadResult, acknowledged_mismatches, transfer_pool
from tools.bench.run import write_requests
from tools.bench.stats import percentile
from tools.cluster.processes import cpu_seconds, wakeups

# What --json promises to every reader of its figures.
JSON_KEYS = (
    "transfers_per_s",
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "replicas",
    "clients",
    "transfers_per_request",
)

# ---------------------------------------------------------------- arguments


def test_the_options_of_the_issue_parse() -> None:
    args = bench.parse_args(
        [
            "--config",
            "c.toml",
            "--launch",
            "--replicas",
            "3",
            "--clients",
            "8",
            "--transfers-per-request",
            "10",
            "--duration",
            "2.5",
            "--accounts",
            "50",
            "--json",
            "out.json",
            "--plot",
            "out.png",
        ]
    )
    assert (args.config, args.launch, args.replicas, args.clients) == ("c.toml", True, 3, 8)
    assert (args.transfers_per_request, args.duration, args.accounts) == (10, 2.5, 50)
    assert (args.json, args.plot, args.matrix) == ("out.json", "out.png", False)
    assert bench.parse_args(["--matrix"]).launch  # the matrix always launches


@pytest.mark.parametrize(
    "argv",
    [
        ["--clients", "0"],
        ["--duration", "0"],
        ["--transfers-per-request", "8191"],
        ["--accounts", "1"],
    ],
)
def test_nonsense_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_one_load_process_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGERPAXOS_BENCH_LOAD_PROCESSES", raising=False)
    assert bench.load_processes_for(1) == 1
    assert bench.load_processes_for(64) == 1
    monkeypatch.setenv("LEDGERPAXOS_BENCH_LOAD_PROCESSES", "4")
    assert bench.load_processes_for(64) == 4
    assert bench.load_processes_for(2) == 2  # never more processes than clients


def test_config_overrides_come_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERPAXOS_BENCH_OVERRIDES", '{"pipeline_slots_max": 4}')
    assert bench.config_overrides() == {"pipeline_slots_max": 4}
    monkeypatch.setenv("LEDGERPAXOS_BENCH_OVERRIDES", "[1]")
    with pytest.raises(bench.BenchError):
        bench.config_overrides()
    monkeypatch.setenv("LEDGERPAXOS_BENCH_OVERRIDES", "{nope")
    with pytest.raises(bench.BenchError):
        bench.config_overrides()


# ---------------------------------------------------------------- statistics and output


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7
    assert math.isnan(percentile([], 0.5))


def test_histogram_counts_every_latency() -> None:
    values = [0.005, 0.2, 0.21, 3.0, 150.0]
    histogram = bench.histogram(values)
    assert sum(histogram["counts"]) == len(values)
    assert len(histogram["edges_ms"]) == len(histogram["counts"]) + 1
    assert bench.histogram([]) == {"edges_ms": [], "counts": []}


def fake_run(**changes: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "commit": "0123456789abcdef",
        "uncommitted_changes": True,
        "replicas": 5,
        "clients": 64,
        "transfers_per_request": 100,
        "accounts": 1000,
        "duration_s": 10.0,
        "fsync": True,
        "cpu_count": 2,
        "load_average_before": [1.0, 1, 1],
        "load_average_after": [2.0, 1, 1],
        "leader": "n1",
        "transfers_per_s": 123456.7,
        "requests_per_s": 1234.5,
        "p50_ms": 0.91,
        "p90_ms": 12.5,
        "p99_ms": 150.2,
        "max_ms": 333.0,
        "fsyncs_per_s": 250.0,
        "cpu_s_per_1k_transfers": {
            "n1": 0.005,
            "n2": 0.004,
            "n3": 0.004,
            "bench": 0.0,
            "load0": 0.001,
            "bench (all)": 0.001,
        },
        "balances_agree": True,
        "sum_unchanged": True,
        "acknowledged_match": True,
        "acknowledged_mismatches": [],
        "unanswered_transfers": 0,
        "total_before": 10**12,
        "total_after": 10**12,
        "accounts_checked": 1000,
        "transfers_refused": 0,
        "client_errors": [],
        "timeline_bucket_s": 0.25,
        "timeline_transfers_per_s": [1.0, 2.0],
        "_latencies_ms": [0.5, 1.0, 2.0],
    }
    run.update(changes)
    return run


def test_table_has_one_row_per_run_and_the_check() -> None:
    text = bench.render_table([fake_run(), fake_run(clients=1, transfers_per_request=1)])
    assert "transfers/s" in text and "123,457" in text and "0.91" in text
    assert "0123456789ab + uncommitted changes" in text
    assert text.count("check ") == 2 and "FAILED" not in text
    failed = bench.render_table([fake_run(balances_agree=False)])
    assert "FAILED" in failed
    lost = fake_run(acknowledged_match=False, acknowledged_mismatches=["A: 10, the ... give 7"])
    text = bench.render_table([lost])
    assert "FAILED" in text and "  A: 10, the ... give 7" in text
    assert not bench.run_ok(lost)


def _t(sender: str, receiver: str, amount: int) -> Transfer:
    return Transfer(sender=sender, receiver=receiver, amount=amount)


def test_the_end_check_finds_an_acknowledged_transfer_lost_or_applied_twice() -> None:
    before = {"A": 10, "B": 10, "C": 10}
    # Acknowledged: A->B 3 and B->C 1 accepted.
    flow = {"A": -3, "B": 2, "C": 1}
    assert acknowledged_mismatches(before, {"A": 7, "B": 12, "C": 11}, flow, []) == []
    lost = acknowledged_mismatches(before, {"A": 10, "B": 9, "C": 11}, flow, [])
    assert lost == [
        "A: 10, the acknowledged transfers give 7",
        "B: 9, the acknowledged transfers give 12",
    ]
    twice = acknowledged_mismatches(before, {"A": 4, "B": 15, "C": 11}, flow, [])
    assert [line.split(":")[0] for line in twice] == ["A", "B"]
    # A request never answered may have moved its money or not, nothing else.
    unknown = [_t("C", "A", 5)]
    assert acknowledged_mismatches(before, {"A": 12, "B": 12, "C": 6}, flow, unknown) == []
    assert acknowledged_mismatches(before, {"A": 7, "B": 12, "C": 11}, flow, unknown) == []
    off = acknowledged_mismatches(before, {"A": 13, "B": 12, "C": 5}, flow, unknown)
    assert off == [
        "A: 13, the acknowledged transfers give 7..12 (unanswered requests)",
        "C: 5, the acknowledged transfers give 6..11 (unanswered requests)",
    ]


def test_json_has_the_required_keys_and_no_private_ones(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    bench.write_json([fake_run()], str(path))
    figures = json.loads(path.read_text())
    assert all(key in figures for key in JSON_KEYS)
    assert "_latencies_ms" not in figures
    bench.write_json([fake_run(), fake_run()], str(path))
    assert len(json.loads(path.read_text())["runs"]) == 2


def sweep_runs() -> list[dict[str, Any]]:
    return [
        fake_run(tls=True, clients=16, transfers_per_request=10, transfers_per_s=10_000.0),
        fake_run(tls=True, transfers_per_s=50_000.0),
        fake_run(tls=False, accounts=100_000, transfers_per_s=1.0),  # not part of the sweep
        fake_run(
            tls=True,
            clients=16,
            transfers_per_request=10,
            accounts=1_000_000,
            transfers_per_s=9_000.0,
        ),
        fake_run(tls=True, accounts=1_000_000, transfers_per_s=40_000.0),
    ]


def test_the_accounts_sweep_compares_each_ledger_size_with_the_smallest() -> None:
    runs = sweep_runs()
    assert report.accounts_sweep(runs) == {
        "16x10": {1_000: 10_000.0, 1_000_000: 9_000.0},
        "64x100": {1_000: 50_000.0, 1_000_000: 40_000.0},
    }
    text = bench.render_accounts_sweep(runs)
    assert "accounts sweep 16x10: 1k 10,000/s (1.00x), 1M 9,000/s (0.90x), against 1k" in text
    assert "1M 40,000/s (0.80x)" in text
    assert bench.render_accounts_sweep([fake_run()]) == ""  # one size: no sweep
    assert "1M" in bench.render_table(runs)  # the accounts column
    memory = bench.render_table([fake_run(replica_rss_mib={"n1": 45.4, "n2": 1234.0})])
    assert "64x100, 1k accounts: n1 45, n2 1,234" in memory


def test_plot_is_a_png(tmp_path: Path) -> None:
    # matplotlib is in the test extras: without it this fails, it does not skip.
    path = tmp_path / "bench.png"
    bench.write_plot([fake_run(), fake_run(clients=1)], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bench.write_plot(sweep_runs(), str(path))  # with the sweep's panel
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(bench.BenchError, match=r"pip install -e '\.\[plot\]'"):
        bench.write_plot([fake_run()], str(tmp_path / "x.png"))
    assert bench.main(["--plot", str(tmp_path / "x.png")]) == 2


# ---------------------------------------------------------------- helpers


def test_accounts_and_balances_leave_room_for_random_transfers() -> None:
    names = account_names(1000)
    assert len(set(names)) == 1000 and names[0] == "a0000"
    assert initial_balance_for(1000) * 1000 <= 10**15
    assert initial_balance_for(1000) > 100 * 1_000_000  # a million transfers of <=100 each


def test_a_clients_pool_sends_from_its_own_account_to_random_others() -> None:
    pool = transfer_pool("b", ("a", "b", "c"), 100, random.Random(1))
    assert len(pool) == 200 and pool[:100] == pool[100:]
    assert all(t.sender == "b" and t.receiver in "ac" and 1 <= t.amount <= 100 for t in pool)
    assert {t.receiver for t in pool} == {"a", "c"}
    with pytest.raises(ValueError):
        transfer_pool("a", ("a",), 10, random.Random(1))


def test_cpu_seconds_of_this_process() -> None:
    seconds = cpu_seconds(os.getpid())
    if seconds is None:
        pytest.skip("no /proc")
    assert seconds > 0
    assert cpu_seconds(2**22 + 12345) is None  # no such process


def test_wakeups_count_each_time_this_process_blocked() -> None:
    before = wakeups(os.getpid())
    if before is None:
        pytest.skip("no /proc")
    for _ in range(3):
        time.sleep(0.001)  # blocks: one voluntary context switch each
    after = wakeups(os.getpid())
    assert after is not None and after >= before + 3
    assert wakeups(2**22 + 12345) is None  # no such process


def test_the_table_shows_wakeups_per_request_when_measured() -> None:
    run = fake_run(wakeups_per_request={"n1": 4.5, "n2": 3.25, "load0": 1.0})
    text = bench.render_table([run])
    assert "Wake-ups per request" in text and "n1* 4.50, n2 3.25, load0 1.00" in text
    assert "Wake-ups" not in bench.render_table([fake_run()])


def test_profile_summary_separates_idle_from_busy() -> None:
    lines = [
        "main (a.py:1);run (trio/_run.py:2);get_events (trio/_io_epoll.py:3) 50",
        "main (a.py:1);step (core.py:4);unpack_command (wire/batch.py:5) 30",
        "main (a.py:1);step (core.py:4) 20",
    ]
    text = bench_profile.summarize(lines, top=5)
    assert "100 samples, 50 idle" in text
    assert "60.0%  unpack_command (batch.py)" in text
    assert "100.0%  main (a.py)" in text


# ---------------------------------------------------------------- runtime options


def test_runtime_options_parse_by_name() -> None:
    assert RuntimeOptions.parse("") == RuntimeOptions()
    assert RuntimeOptions.parse(" sync_in_thread ").sync_in_thread
    assert not RuntimeOptions.parse("no_sync_in_thread").sync_in_thread
    with pytest.raises(ValueError, match="unknown runtime option"):
        RuntimeOptions.parse("faster")


@pytest.mark.parametrize(
    "options",
    [
        RuntimeOptions(),
        RuntimeOptions(sync_in_thread=True),
    ],
    ids=["defaults", "sync_in_thread"],
)
async def test_every_runtime_option_keeps_replicas_consistent(
    tmp_path: Path, options: RuntimeOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fsync on: sync_in_thread only moves a write that fsyncs into a thread. In
    # real time: the virtual clock would jump while a thread writes.
    config = make_local_config(
        3,
        7001,
        tmp_path / "data",
        fsync=True,
        checkpoint_interval=5,
        initial_balance=1000,
        clients={"c1": {"accounts": ["A", "B", "C"]}},
    )
    network = MemoryNetwork()
    in_thread: list[str] = []
    run_sync = trio.to_thread.run_sync

    async def counting_run_sync(function: Any, *args: Any, **kwargs: Any) -> Any:
        in_thread.append(getattr(function, "__name__", repr(function)))
        return await run_sync(function, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting_run_sync)
    async with trio.open_nursery() as nursery:
        replicas = [
            Replica(
                config,
                node_id,
                network=network,
                rng=random.Random(i),
                options=options,
                start=Start.format,
            )
            for i, node_id in enumerate(config.node_ids)
        ]
        for replica in replicas:
            await nursery.start(replica.run)
        async with open_client(config, "c1", network=network) as client:
            with trio.fail_after(30):
                for _ in range(25):  # across several checkpoints
                    assert (await client.transfers([("A", "B", 1), ("B", "C", 1)])).ok
                balances = await client.balances()
        assert (balances["A"], balances["B"], balances["C"]) == (1000 - 25, 1000, 1000 + 25)
        with trio.fail_after(10):
            while len({tuple(sorted(r.core.balances().items())) for r in replicas}) != 1 or any(
                r.core.executed_slot != replicas[0].core.commit_slot for r in replicas
            ):
                await trio.sleep(0.05)
        assert all(r.wal_fsyncs > 0 for r in replicas)
        nursery.cancel_scope.cancel()
    durable_in_thread = in_thread.count("make_durable")
    if options.sync_in_thread:
        assert durable_in_thread > 25, in_thread[:5]  # every group commit went through a thread
    else:
        assert durable_in_thread == 0


def test_comparison_names_the_ratio_or_how_to_get_pysyncobj() -> None:
    skipped = bench.render_comparison([fake_run()], None)
    assert "pip install pysyncobj==0.3.17" in skipped
    pysyncobj = {
        "system": "pysyncobj 0.3.17 (defaults: no fsync)",
        "replicas": 5,
        "outstanding": 5000,
        "transfers_per_s": 30_000.0,
        "p50_ms": 134.0,
        "p99_ms": 200.0,
        "max_ms": 250.0,
        "cpu_s_per_1k_transfers": {"p0": 0.01},
        "balances_agree": True,
        "sum_unchanged": True,
    }
    text = bench.render_comparison([fake_run(transfers_per_s=90_000.0), fake_run()], pysyncobj)
    assert "30,000 transfers/s" in text and "= 4.1x PySyncObj" in text


def test_the_tls_cost_pairs_each_load_with_and_without() -> None:
    runs = [
        fake_run(clients=64, transfers_per_request=1, tls=True, transfers_per_s=9_000.0),
        fake_run(clients=64, transfers_per_request=1, tls=False, transfers_per_s=10_000.0),
        fake_run(clients=1, transfers_per_request=1, tls=True),  # no plaintext twin: no line
    ]
    (line,) = bench.render_tls_cost(runs).splitlines()
    assert line.startswith(
        "TLS at 64x1: 9,000 transfers/s against 10,000 in plaintext (+10.0% cost)"
    )
    assert " on " in bench.render_table(runs[:1]) and " off " in bench.render_table(runs[1:2])


def test_the_scale_figures_come_from_a_snapshot_written_beside_a_loop_and_installed_in_parts() -> (
    None
):
    from ledgerpaxos import constants
    from tools.bench import scale

    figures = scale.accounts_figures(45_000)  # every balance moved: 3 parts of 20,000 rows
    assert figures["install_parts"] == 3
    assert figures["install_frame_bytes"] < constants.message_size_max / 100
    assert figures["snapshot_bytes_per_account"] > 0 and figures["loop_pause_s"] >= 0
    (row,) = scale.sessions_figures([2_000])
    assert row["sessions"] == 2_100 and row["evictions"] == 0


def _round(
    ours: tuple[float, float, float], etcd: tuple[float, float, float, float]
) -> dict[str, Any]:
    """ours: 1x1 transfers/s, its p50, 64x1 transfers/s; etcd: 1 client puts/s,
    p50, 64 clients puts/s, p50."""
    mine = [
        bench.round_figures(
            fake_run(
                clients=1,
                transfers_per_request=1,
                transfers_per_s=ours[0],
                p50_ms=ours[1],
                tls=True,
            )
        ),
        bench.round_figures(
            fake_run(
                clients=64, transfers_per_request=1, transfers_per_s=ours[2], p50_ms=10.0, tls=True
            )
        ),
    ]
    return {
        "ours": mine,
        "etcd": [
            {
                "clients": 1,
                "puts_per_s": etcd[0],
                "p50_ms": etcd[1],
                "p90_ms": 3.0,
                "p99_ms": 4.0,
                "max_ms": 9.0,
            },
            {
                "clients": 64,
                "puts_per_s": etcd[2],
                "p50_ms": etcd[3],
                "p90_ms": 40.0,
                "p99_ms": 70.0,
                "max_ms": 99.0,
            },
        ],
    }


# Ratios per round: 1 client 1.40x/0.60x, 3.00x/0.60x, 2.25x/1.00x; 64 clients
# 3.00x, 2.00x, 2.00x. The medians of the ratios (2.25x, 0.60x; 2.00x) differ
# from the ratios of the medians (700/400 = 1.75x; 5,000/2,000 = 2.50x).
ETCD = {
    "system": "etcd 3.4.23",
    "members": 5,
    "value_bytes": 100,
    "duration_s": 8.0,
    "rounds": [
        _round((700.0, 1.2, 6_000.0), (500.0, 2.0, 2_000.0, 30.0)),
        _round((300.0, 3.0, 5_000.0), (100.0, 5.0, 2_500.0, 30.0)),
        _round((900.0, 1.0, 4_000.0), (400.0, 1.0, 2_000.0, 30.0)),
    ],
}


def test_the_etcd_comparison_takes_its_ratios_within_each_round(tmp_path: Path) -> None:
    skipped = bench.render_versus_etcd(None)
    assert "apt-get install etcd-server" in skipped
    text = bench.render_versus_etcd(ETCD)
    rows = [line.split() for line in text.splitlines() if line[:5].strip().isdigit()]
    assert [row[:2] for row in rows] == [
        ["1", "1"],
        ["1", "64"],
        ["2", "1"],
        ["2", "64"],
        ["3", "1"],
        ["3", "64"],
    ]
    assert rows[0][2:] == ["700", "1.20", "150", "500", "2.00", "4.00", "1.40x", "0.60x"]
    assert rows[3][-2] == "2.00x" and rows[4][-2:] == ["2.25x", "1.00x"]
    assert (
        "1 client, median of 3 rounds: 2.25x etcd's puts/s (rounds 1.40-3.00x), 0.60x its p50; "
        "target at least 1.4x: met, p50 at most 0.7x: met" in text
    )
    assert (
        "64 clients, median of 3 rounds: 2.00x etcd's puts/s (rounds 2.00-3.00x), 0.33x its p50; "
        "target at least 3x: not met" in text
    )
    path = tmp_path / "bench.json"
    bench.write_json([fake_run()], str(path), None, ETCD)
    rounds = json.loads(path.read_text())["etcd"]["rounds"]
    assert rounds[2]["ours"][0]["transfers_per_s"] == 900.0 and rounds[2]["ours"][0]["checked"]
    assert rounds[1]["etcd"][1]["clients"] == 64


def test_an_etcd_that_fails_ends_the_rounds_and_keeps_those_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Round 1 completes, etcd fails in round 2: round 1 is kept, no round 3."""
    ours = iter([700.0, 6_000.0, 600.0, 5_000.0])
    theirs = iter(ETCD["rounds"][:1])
    launched: list[int] = []

    def run_launched(args: Any, clients: int, transfers: int, *, tls_on: bool) -> dict[str, Any]:
        launched.append(clients)
        return fake_run(clients=clients, transfers_per_request=1, transfers_per_s=next(ours))

    def measure(*, members: int, duration: float) -> dict[str, Any]:
        each = next(theirs, None)
        if each is None:
            raise versus_etcd.EtcdError("etcd member m2 exited")
        return {**{k: v for k, v in ETCD.items() if k != "rounds"}, "loads": each["etcd"]}

    monkeypatch.setattr(bench, "_run_launched", run_launched)
    monkeypatch.setattr(versus_etcd, "measure", measure)
    etcd, our_runs = bench._versus_etcd(bench.parse_args(["--matrix", "--etcd-rounds", "5"]))
    assert etcd is not None and len(etcd["rounds"]) == 1
    assert etcd["rounds"][0]["ours"][0]["transfers_per_s"] == 700.0
    assert launched == [1, 64, 1, 64] and len(our_runs) == 4  # round 2's runs still count
    assert "1 client, median of 1 round: 1.40x" in bench.render_versus_etcd(etcd)
    ours = iter([700.0, 6_000.0])
    etcd, _ = bench._versus_etcd(bench.parse_args(["--matrix", "--etcd-rounds", "1"]))
    assert etcd is None  # etcd failed in the only round
    assert "no round completed" in bench.render_versus_etcd(etcd, failed=True)


@pytest.mark.processes
@pytest.mark.skipif(
    not versus_etcd.available(), reason="etcd is not on the PATH (apt-get install etcd-server)"
)
def test_etcd_runs_both_loads_on_loopback_and_leaves_nothing_behind() -> None:
    figures = versus_etcd.measure(members=3, duration=1.0)
    assert [load["clients"] for load in figures["loads"]] == [1, 64]
    assert all(load["puts_per_s"] > 0 and load["p50_ms"] > 0 for load in figures["loads"])
    leftovers = [
        name for name in os.listdir(tempfile.gettempdir()) if name.startswith("ledgerpaxos-etcd-")
    ]
    assert leftovers == []
    ours = subprocess.run(["pgrep", "-f", "ledgerpaxos-etcd-"], capture_output=True, check=False)
    assert ours.returncode == 1  # no member left running (their data dirs are named so)


@pytest.mark.processes
def test_an_etcd_member_that_exits_is_reported_with_its_log_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "etcd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'listen tcp: address already in use' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    cluster = versus_etcd.Cluster(3)
    directory = cluster.directory
    with pytest.raises(versus_etcd.EtcdError, match="exited; its log ends: listen tcp"):
        try:
            cluster.wait_ready()
        finally:
            cluster.close()
    assert not os.path.exists(directory)


def test_the_tracer_stamps_a_replicas_reads_writes_and_fsyncs(tmp_path: Path) -> None:
    code = (
        "import os; r, w = os.pipe(); os.write(w, b'abc'); os.read(r, 9); "
        f"f = os.open({str(tmp_path / 'f')!r}, os.O_WRONLY | os.O_CREAT); os.fsync(f)"
    )
    env = {**os.environ, "PYTHONPATH": str(TRACER), "LEDGERPAXOS_TRACE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code, "--id", "n7"], env=env, check=True)
    lines = [line.split() for line in (tmp_path / "n7.log").read_text().splitlines()]
    assert [(call, size) for _, call, _, size in lines] == [
        ("write", "3"),
        ("read", "3"),
        ("fsync0", "0"),
        ("fsync1", "0"),
    ]
    times = [int(at) for at, *_ in lines]
    assert times == sorted(times)
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # not a replica: no file
    assert sorted(p.name for p in tmp_path.glob("*.log")) == ["n7.log"]


def test_hops_follow_one_request_through_the_leader_and_a_follower(tmp_path: Path) -> None:
    # n1 leads: the request on fd 9 at 100, its Accept at 300, its WAL on fd 5;
    # n2 reads the Accept at 350, writes its WAL (fd 4) at 500, syncs 510-800,
    # answers at 860; n1 reads that at 900, replies on fd 9 at 1,000 and then
    # writes the commit point to its WAL. (Times in µs; the files hold ns.)
    leader = [
        (100, "read", 9),
        (300, "write", 7),
        (320, "write", 5),
        (330, "fsync0", 5),
        (700, "fsync1", 5),
        (900, "read", 8),
        (1_000, "write", 9),
        (1_010, "write", 5),
    ]
    follower = [
        (350, "read", 3),
        (500, "write", 4),
        (510, "fsync0", 4),
        (800, "fsync1", 4),
        (860, "write", 6),
    ]
    for node, events in (("n1", leader), ("n2", follower)):
        (tmp_path / f"{node}.log").write_text(
            "".join(f"{at * 1000} {call} {fd} 1\n" for at, call, fd in events)
        )
    (tmp_path / "requests.txt").write_text(
        "window 0 5000000\nreq 40000 1050000\nreq 6000000 7000000\n"  # the second: outside
    )
    found = hops.hops(*hops.read_trace(tmp_path))
    micro = {name: [v // 1000 for v in values] for name, values in found.items()}
    assert micro == {
        "to_leader": [60],
        "leader_ingest": [200],
        "follower_in": [150],
        "follower_fsync": [290],
        "follower_out": [60],
        "leader_decide": [100],  # the write at 1,010 is the commit point, not the reply
        "to_client": [50],
        "total": [1010],
    }
    assert "leader_ingest" in hops.render(found)
    assert hops.main([str(tmp_path / "missing")]) == 2


def test_a_traced_run_writes_each_requests_send_and_reply_in_ns(tmp_path: Path) -> None:
    done, latency = array("d", [2.5, 3.0]), array("d", [0.5, 0.25])
    result = LoadResult(
        done_at=done.tobytes(), latency_s=latency.tobytes(), transfers_refused=0, errors=()
    )
    write_requests(tmp_path / "1x1" / "requests.txt", 2.0, 4.0, [result])
    assert (tmp_path / "1x1" / "requests.txt").read_text().splitlines() == [
        "window 2000000000 4000000000",
        "req 2000000000 2500000000",
        "req 2750000000 3000000000",
    ]


def test_the_wake_probe_measures_each_loop_and_footprint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = wakeprobe.probe([0.0, 0.001], rounds=wakeprobe.WARMUP_ROUNDS + 3)
    assert [(r["loop"], r["objects"], r["gap_ms"]) for r in rows] == [
        *(("epoll", n, gap) for n in wakeprobe.OBJECTS for gap in (0.0, 1.0)),
        ("trio", 0, 0.0),
        ("trio", 0, 1.0),
    ]
    assert all(isinstance(r["cpu_us"], float) and r["cpu_us"] >= 0 for r in rows)
    table = wakeprobe.render(rows).splitlines()
    assert table[1].split() == ["loop", "objects", "0", "ms", "1", "ms"]
    assert [line.split()[:2] for line in table[2:]] == [
        ["epoll", "0"],
        ["epoll", "1,000"],
        ["epoll", "4,000"],
        ["trio", "0"],
    ]
    with pytest.raises(SystemExit):
        wakeprobe.main(["--gaps-ms", "fast"])
    with pytest.raises(SystemExit):
        wakeprobe.main(["--rounds", str(wakeprobe.WARMUP_ROUNDS)])
    with pytest.raises(ValueError, match="rounds"):
        wakeprobe.wake_cost_s(gap_s=0, objects=0, rounds=1, loop="epoll")
    capsys.readouterr()
