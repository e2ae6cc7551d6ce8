"""The deterministic simulator: reproducibility, the console entry, and the CI batch.

The CI batch runs CI_SEEDS seeds on up to two processes and fails on any seed
that fails — except a seed explained by a known core bug (test_sim_regressions
tracks those as strict xfails) — and on a required coverage mark no run hit.
`make sim` runs 1000 seeds; see the README for 10,000.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerpaxos.sim import coverage
from ledgerpaxos.sim.batch import run_batch
from ledgerpaxos.sim.events import EventQueue
from ledgerpaxos.sim.harness import run_seed
from ledgerpaxos.sim.plan import FAULT_KINDS, draw_plan
from tests.test_sim_regressions import known_bug_of
from tools import sim as sim_cli

ROOT = Path(__file__).resolve().parent.parent
CI_SEEDS = 300
CI_JOBS = min(2, os.cpu_count() or 1)


# ---------------------------------------------------------------- pieces


def test_events_at_the_same_time_run_in_the_order_scheduled() -> None:
    queue = EventQueue()
    seen: list[str] = []
    queue.at(5, seen.append, "b")
    queue.at(1, seen.append, "a")
    queue.at(5, seen.append, "c")
    queue.after(5, seen.append, "d")
    queue.run_until(10)
    assert seen == ["a", "b", "c", "d"]
    assert queue.now == 10


def test_seeds_differ_in_kind_not_only_in_detail() -> None:
    plans = [draw_plan(seed, 5) for seed in range(200)]
    losses = [p.network.loss for p in plans]
    duplications = [p.network.duplication for p in plans]
    assert min(losses) == 0.0 and max(losses) > 0.25 and max(losses) <= 0.30
    assert min(duplications) == 0.0 and max(duplications) > 0.4 and max(duplications) <= 0.50
    for kind in FAULT_KINDS:
        weights = [dict(p.faults.weights)[kind] for p in plans]
        assert 0.0 in weights and max(weights) > 0.0, kind
    assert len({p.checkpoint_interval for p in plans}) > 2
    assert len({p.timers for p in plans}) > 3
    assert all(p.faulty_max == 2 for p in plans)
    assert draw_plan(7, 5) == draw_plan(7, 5)


# ---------------------------------------------------------------- reproducibility


def test_a_seed_gives_the_same_run_every_time() -> None:
    first = run_seed(11, trace=True)
    again = run_seed(11, trace=True)
    assert first.trace_hash == again.trace_hash
    assert (first.slots, first.submissions, first.marks) == (
        again.slots,
        again.submissions,
        again.marks,
    )
    assert run_seed(12, trace=True).trace_hash != first.trace_hash


def test_tracing_does_not_change_the_run() -> None:
    traced, plain = run_seed(5, trace=True), run_seed(5)
    assert (traced.slots, traced.messages, traced.marks) == (
        plain.slots,
        plain.messages,
        plain.marks,
    )


def _trace_hash_in_subprocess(seed: int, hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "tools.sim", "--seed", str(seed)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("trace hash: "), done.stdout + done.stderr
    return last


@pytest.mark.parametrize("seed", [3, 42])
def test_trace_hash_does_not_depend_on_pythonhashseed(seed: int) -> None:
    assert _trace_hash_in_subprocess(seed, "0") == _trace_hash_in_subprocess(seed, "4242")


# ---------------------------------------------------------------- the console


def test_one_seed_ends_with_its_trace_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--seed", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"trace hash: {run_seed(5, trace=True).trace_hash}"
    assert any(line.startswith("seed 5: ok") for line in lines)


def test_a_failing_seed_prints_property_seed_and_replay_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sim_cli.main(["--seed", "0", "--planted", "promise-before-fsync"]) == 1
    out = capsys.readouterr().out
    assert "FAILED seed 0: persist-before-speak" in out
    assert (
        "replay: ledgerpaxos-sim --seed 0 --replicas 5 --planted promise-before-fsync --trace"
        in out
    )
    assert out.strip().splitlines()[-1].startswith("trace hash: ")


def test_trace_prints_every_event(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--seed", "2", "--trace"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 500
    assert any(" -> " in line for line in lines) and any("HEAL" in line for line in lines)


def test_a_batch_prints_a_summary_and_fails_on_a_failing_seed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sim_cli.main(["--seeds", "3", "--start", "1", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "seeds passed           3/3" in out
    for mark in coverage.REQUIRED:
        assert mark in out
    code = sim_cli.main(
        ["--seeds", "2", "--jobs", "1", "--planted", "promise-before-fsync", "--first-failure"]
    )
    assert code == 1
    assert "result: FAIL (failing seeds)" in capsys.readouterr().out


def test_a_batch_of_coverage_size_fails_on_a_missed_mark_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seed 2 alone stands in for 1000 seeds: it misses required marks.
    monkeypatch.setattr(sim_cli, "COVERAGE_REQUIRED_FROM_SEEDS", 1)
    one = ["--seeds", "1", "--start", "2", "--jobs", "1"]
    assert sim_cli.main(one) == 1
    out = capsys.readouterr().out
    assert "COVERAGE: no run hit torn WAL tail cut" in out and "missed coverage marks" in out
    assert sim_cli.main([*one, "--no-require-coverage"]) == 0
    monkeypatch.setattr(sim_cli, "COVERAGE_REQUIRED_FROM_SEEDS", 2)
    assert sim_cli.main(one) == 0  # below the batch size that requires coverage


# ---------------------------------------------------------------- the CI batch


def test_ci_batch_of_seeds_passes_with_every_coverage_mark() -> None:
    report = run_batch(0, CI_SEEDS, 5, jobs=CI_JOBS)
    unexplained = [r for r in report.failures if known_bug_of(r) is None]
    known = sorted(
        (known_bug_of(r), r.seed) for r in report.failures if known_bug_of(r) is not None
    )
    print(
        f"\nCI batch: {CI_SEEDS} seeds in {report.wall_seconds:.1f} s on {CI_JOBS} process(es) = "
        f"{report.seeds_per_second:.1f} seeds/s; re-sends {report.resend_ratio:.1%}; "
        f"known core bugs hit: {known}"
    )
    assert not unexplained, "\n".join(
        f"seed {r.seed}: {r.property}: {r.detail}\n  replay: {r.replay_command()}"
        for r in unexplained
    )
    assert report.missing_required_marks() == []
    assert report.resend_ratio >= 0.25
