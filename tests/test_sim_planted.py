"""Proof that every check of the simulator bites.

Each planted bug (sim/planted.py, never a shipped code path) names the one
property whose check must catch it (`PlantedBug.caught_by`). For each, a
pinned seed shows that check catching it; the same seed with that one check
disabled shows the bug then goes uncaught by it, and the simulator still
finishes the run (no crash of the harness); and the same seed passes without
the bug. The simulator is deterministic, so a pinned seed stays put until the
core, the plan or the fault mix changes; then `python -m tools.sim --planted
NAME --seeds 200 --replicas R` finds a new one.

The properties no planted bug reaches are proven by unit tests that feed the
check a bad history (tests/test_sim_checkers.py), listed in UNIT_TESTED.
"""

from __future__ import annotations

import pytest

from ledgerpaxos.sim.checkers import PROPERTIES
from ledgerpaxos.sim.harness import run_seed
from ledgerpaxos.sim.planted import PLANTED
from tests.test_sim_regressions import known_bug_of

# bug -> (replicas, a seed its checker catches it on)
CASES: dict[str, tuple[int, int]] = {
    "quorum-one-short": (3, 3),
    "promise-before-fsync": (5, 0),
    "ignores-highest-ballot": (3, 45),
    "lowest-ballot-wins": (5, 1397),  # two ballots' values in one open slot: rare
    "stale-client-table": (5, 0),
    "executes-duplicates": (5, 0),
    "rejected-still-applied": (5, 2),
    "debits-short": (5, 0),
    "checkpoint-without-clients": (5, 0),
    "wrong-digest-reported": (5, 0),
    "no-catch-up": (5, 1),
    "sleeps-through-election": (5, 0),
    "swapped-replies": (5, 0),
    "naive-rejoin": (3, 4),  # a vote forgotten with the disk, counted in a chosen majority
}

# Properties proven by a unit test of their check instead of a planted bug.
UNIT_TESTED = {
    "executed-once": "test_a_slot_executed_twice_by_one_process_is_caught",
    "committed-kept": "test_an_answered_request_missing_from_a_converged_replica_is_caught",
    "recovery": "test_a_replica_that_cannot_recover_its_disk_is_caught",
}
# The core's own assertions: not a check of the simulator, reported as found.
NOT_A_CHECK = {"core-invariant"}


@pytest.mark.parametrize("planted", sorted(CASES))
def test_its_checker_catches_each_planted_bug(planted: str) -> None:
    replicas, seed = CASES[planted]
    bug = PLANTED[planted]
    result = run_seed(seed, replicas, planted=planted)
    found = "the run passed" if result.ok else f"{result.property}: {result.detail}"
    assert result.property == bug.caught_by, (
        f"{planted} ({bug.description}) not caught by {bug.caught_by} on seed {seed} "
        f"({replicas} replicas): {found}"
    )
    assert result.replay_command().endswith(f"--planted {planted} --trace")


@pytest.mark.parametrize("planted", sorted(CASES))
def test_with_its_check_disabled_a_planted_bug_goes_uncaught_by_it(planted: str) -> None:
    replicas, seed = CASES[planted]
    bug = PLANTED[planted]
    result = run_seed(seed, replicas, planted=planted, disabled={bug.caught_by})
    assert result.property != bug.caught_by


@pytest.mark.parametrize("planted", sorted(CASES))
def test_the_seed_of_each_planted_bug_passes_without_it(planted: str) -> None:
    replicas, seed = CASES[planted]
    clean = run_seed(seed, replicas)
    if not clean.ok:  # only a known core bug may fail it without the planted one
        assert known_bug_of(clean) is not None, (
            f"seed {seed} also fails without {planted}: {clean.property}: {clean.detail}"
        )


def test_every_planted_bug_has_a_case_and_every_check_a_proof() -> None:
    assert set(PLANTED) == set(CASES)
    by_planted = {bug.caught_by for bug in PLANTED.values()}
    assert not by_planted & set(UNIT_TESTED), "proven twice: keep one"
    unproven = set(PROPERTIES) - by_planted - set(UNIT_TESTED) - NOT_A_CHECK
    assert not unproven, f"no planted bug or unit test proves {sorted(unproven)}"
