"""Summarize py-spy's collapsed stacks (`--format raw`): where the samples went.

    python -m tools.bench.profile PROFILE.txt [--top 25]

The benchmark records with `py-spy record --gil`: only the thread holding the
GIL is sampled, so the samples are Python CPU time (a thread blocked in fsync
or unlink is not counted). Each input line is "frame;frame;...;leaf count"
(root first). Prints the share
of samples per function by self time (the leaf) and by inclusive time (the
function anywhere on the stack, counted once per sample), with idle samples
(the event loop waiting in epoll/select, threads waiting on a lock) shown
separately so the shares describe the busy time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence

# Leaf functions that mean "waiting", not working (event loop, idle worker threads).
_IDLE = re.compile(
    r"(^|\.)(epoll|select|poll|wait|_wait_for_tstate_lock|acquire|sleep|get_events|_epoll_wait|_work)$"
)


def _function(frame: str) -> str:
    """'name (path/to/file.py:123)' -> 'name (file.py)'."""
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip()
    name, path = match.groups()
    return f"{name} ({path.rsplit('/', 1)[-1]})"


def summarize(lines: Sequence[str], top: int) -> str:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [_function(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        if _IDLE.search(leaf.split(" (")[0]):
            idle += count
            continue
        self_time[leaf] += count
        for function in set(frames):
            inclusive[function] += count
    busy = total - idle
    out = [f"{total} samples, {idle} idle ({100 * idle / max(1, total):.0f}%), {busy} busy"]
    out.append(f"\nself time (share of busy samples), top {top}:")
    for function, count in self_time.most_common(top):
        out.append(f"  {100 * count / max(1, busy):5.1f}%  {function}")
    out.append(f"\ninclusive time (share of busy samples), top {top}:")
    for function, count in inclusive.most_common(top):
        out.append(f"  {100 * count / max(1, busy):5.1f}%  {function}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_profile", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.files:
        with open(path, encoding="utf-8", errors="replace") as f:
            print(f"== {path}")
            print(summarize(f.readlines(), args.top))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
