"""Many seeds: run them on worker processes, add up what they did.

Results come back in seed order whatever the number of workers, so a batch's
summary is the same for the same seeds.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable, Iterator

import attrs

from ledgerpaxos.sim import coverage
from ledgerpaxos.sim.harness import SimResult, run_seed


@attrs.frozen(kw_only=True)
class BatchReport:
    results: tuple[SimResult, ...]
    wall_seconds: float
    jobs: int

    @property
    def failures(self) -> tuple[SimResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def seeds_per_second(self) -> float:
        return len(self.results) / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def mark_counts(self) -> dict[str, int]:
        """Mark -> how many runs hit it (every mark listed, zero included)."""
        counts = dict.fromkeys(coverage.ALL, 0)
        for result in self.results:
            for mark in result.hit:
                counts[mark] += 1
        return counts

    def missing_required_marks(self) -> list[str]:
        counts = self.mark_counts()
        return [mark for mark in coverage.REQUIRED if counts[mark] == 0]

    @property
    def submissions(self) -> int:
        return sum(r.submissions for r in self.results)

    @property
    def resends(self) -> int:
        return sum(r.resends for r in self.results)

    @property
    def resend_ratio(self) -> float:
        return self.resends / self.submissions if self.submissions else 0.0


def _run_one(args: tuple[int, int, str | None]) -> SimResult:
    seed, replicas, planted = args
    return run_seed(seed, replicas, planted=planted)


def _worker_started() -> None:
    # A fork inherits its parent's signal handlers (a test runner's, say);
    # Pool.terminate() stops workers with SIGTERM, which must kill them.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def iterate_seeds(
    seeds: list[int], replicas: int, *, planted: str | None = None, jobs: int = 1
) -> Iterator[SimResult]:
    """Results of `seeds`, in order, computed on `jobs` processes.

    The pool is closed and joined once every result is in; only a caller
    that stops early (or an error) terminates it."""
    work = [(seed, replicas, planted) for seed in seeds]
    if jobs <= 1 or len(seeds) <= 1:
        for item in work:
            yield _run_one(item)
        return
    context = multiprocessing.get_context("fork")
    pool = context.Pool(jobs, initializer=_worker_started)
    try:
        yield from pool.imap(_run_one, work, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def run_batch(
    start: int,
    count: int,
    replicas: int = 5,
    *,
    planted: str | None = None,
    jobs: int = 1,
    progress: Callable[[SimResult, int], None] | None = None,
) -> BatchReport:
    """Run seeds start .. start+count-1; `progress(result, done)` after each."""
    started = time.perf_counter()
    results = []
    for result in iterate_seeds(
        list(range(start, start + count)), replicas, planted=planted, jobs=jobs
    ):
        results.append(result)
        if progress is not None:
            progress(result, len(results))
    return BatchReport(
        results=tuple(results), wall_seconds=time.perf_counter() - started, jobs=jobs
    )
