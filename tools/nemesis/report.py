"""The nemesis's table, JSON and timeline plot.

The table: faults by kind (how many, mean time held, time to recover after
the heal), operations (ok, refused, unanswered), latency in calm and in faults
(an operation is "in faults" when it was sent between a fault's start and the
cluster's recovery from it). The plot, like Jepsen's rate and latency plots:
operations completed per second over time, and each operation's latency, with
every fault's window shaded in its kind's colour.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from tools.nemesis.run import FAULT_KINDS, FaultRecord, RunResult, recover_timeout_s
from tools.tables import format_table

bucket_s = 0.5


def in_fault(sent_s: float, faults: list[FaultRecord]) -> bool:
    return any(
        f.start_s
        <= sent_s
        <= (f.recovered_s if f.recovered_s is not None else f.healed_s + recover_timeout_s)
        for f in faults
    )


def summary(result: RunResult) -> dict[str, Any]:
    ops = result.ops
    calm = [
        op.latency_s
        for op in ops
        if op.latency_s is not None and not in_fault(op.sent_s, result.faults)
    ]
    faulty = [
        op.latency_s
        for op in ops
        if op.latency_s is not None and in_fault(op.sent_s, result.faults)
    ]
    by_kind: dict[str, list[FaultRecord]] = defaultdict(list)
    for fault in result.faults:
        by_kind[fault.kind].append(fault)
    kinds = {}
    for kind in FAULT_KINDS:
        records = by_kind.get(kind, [])
        recoveries = [r.recovery_s for r in records if r.recovery_s is not None]
        kinds[kind] = {
            "count": len(records),
            "held_s_mean": _mean([r.healed_s - r.start_s for r in records]),
            "recovery_s_mean": _mean(recoveries),
            "recovery_s_max": max(recoveries) if recoveries else None,
            "not_recovered": sum(1 for r in records if r.recovery_s is None),
            "skipped": result.skipped_kinds.get(kind),
        }
    transfers = [op for op in ops if op.kind == "transfer"]
    return {
        "ok": result.ok,
        "duration_s": result.duration_s,
        "operations": {
            "transfers_applied": sum(1 for op in transfers if op.answered and op.ok),
            "transfers_refused": sum(1 for op in transfers if op.answered and not op.ok),
            "reads": sum(1 for op in ops if op.kind == "read" and op.answered),
            "unanswered": sum(1 for op in ops if not op.answered),
            "checked": result.verdict.checked_ops,
        },
        "latency_calm": latency_summary(calm),
        "latency_in_faults": latency_summary(faulty),
        "faults": kinds,
        "problems": [
            *result.verdict.problems,
            *result.digest_problems,
            *result.after_restart,
            *[
                f"{f.kind} on {','.join(f.nodes)} at {f.start_s:.1f} s: not recovered"
                for f in result.faults
                if f.recovered_s is None
            ],
        ],
        "final_balances": result.verdict.final_balances,
        "faults_timeline": [
            {
                "kind": f.kind,
                "nodes": list(f.nodes),
                "start_s": f.start_s,
                "healed_s": f.healed_s,
                "recovered_s": f.recovered_s,
            }
            for f in result.faults
        ],
    }


def latency_summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1000 * ordered[-1],
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(summary: dict[str, Any], key: str) -> str:
    return f"{summary[key]:.1f}" if key in summary else "-"


def render(data: dict[str, Any]) -> str:
    fault_rows = []
    for kind, f in data["faults"].items():
        if f["skipped"]:
            fault_rows.append([kind, "skipped", "", "", "", f["skipped"]])
            continue
        fault_rows.append(
            [
                kind,
                f["count"],
                _s(f["held_s_mean"]),
                _s(f["recovery_s_mean"]),
                _s(f["recovery_s_max"]),
                f"{f['not_recovered']} not recovered" if f["not_recovered"] else "",
            ]
        )
    ops = data["operations"]
    lat_rows = [
        [name, s["count"], _ms(s, "p50_ms"), _ms(s, "p99_ms"), _ms(s, "max_ms")]
        for name, s in (("calm", data["latency_calm"]), ("in faults", data["latency_in_faults"]))
    ]
    lines = [
        format_table(
            ["fault", "count", "held s", "recovery s (mean)", "recovery s (max)", ""],
            fault_rows,
            align="lrrrrl",
        ),
        "",
        f"operations: {ops['transfers_applied']} transfers applied, "
        f"{ops['transfers_refused']} refused (insufficient funds), {ops['reads']} reads, "
        f"{ops['unanswered']} unanswered; {ops['checked']} checked against the log order",
        "",
        format_table(["latency", "ops", "p50 ms", "p99 ms", "max ms"], lat_rows, align="lrrrr"),
        "",
    ]
    if data["problems"]:
        lines.append(f"FAILED: {len(data['problems'])} problems")
        lines += [f"  {p}" for p in data["problems"]]
    else:
        lines.append(
            "PASSED: every acknowledged transfer applied exactly once, every read a state of "
            "the log order between its send and its reply, money conserved, no overdraft, "
            "all five replicas equal, also after kill -9 of all five"
        )
    return "\n".join(lines)


def write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


_colours = {
    "kill": "tab:red",
    "leader-kill": "tab:orange",
    "pause": "tab:olive",
    "partition": "tab:blue",
    "leader-partition": "tab:cyan",
    "one-way": "tab:purple",
    "bridge": "tab:pink",
    "disk-full": "tab:brown",
    "disk-lost": "tab:gray",
    "wal-flip": "tab:green",
}


def write_plot(result: RunResult, data: dict[str, Any], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, latency) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    buckets: dict[str, list[int]] = {"ok": [], "refused": []}
    count = int(result.duration_s / bucket_s) + 2
    for key in buckets:
        buckets[key] = [0] * count
    points: dict[str, tuple[list[float], list[float]]] = {"ok": ([], []), "refused": ([], [])}
    for op in result.ops:
        if op.replied_s is None or op.latency_s is None:
            continue
        key = "ok" if op.ok else "refused"
        index = min(count - 1, int(op.replied_s / bucket_s))
        buckets[key][index] += 1
        points[key][0].append(op.sent_s)
        points[key][1].append(max(op.latency_s * 1000, 0.1))
    times = [bucket_s * (i + 0.5) for i in range(count)]
    rate.plot(times, [v / bucket_s for v in buckets["ok"]], color="black", lw=1, label="ok")
    rate.plot(
        times, [v / bucket_s for v in buckets["refused"]], color="tab:red", lw=1, label="refused"
    )
    rate.set_ylabel("operations/s")
    latency.scatter(points["ok"][0], points["ok"][1], s=2, color="black", label="ok")
    latency.scatter(
        points["refused"][0], points["refused"][1], s=2, color="tab:red", label="refused"
    )
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("seconds into the run (by send time)")
    shown: set[str] = set()
    for fault in result.faults:
        end = fault.recovered_s if fault.recovered_s is not None else fault.healed_s
        for axis in (rate, latency):
            axis.axvspan(
                fault.start_s,
                end,
                color=_colours.get(fault.kind, "tab:gray"),
                alpha=0.18,
                lw=0,
                label=fault.kind if axis is rate and fault.kind not in shown else None,
            )
        shown.add(fault.kind)
    rate.legend(loc="upper left", fontsize=7, ncol=6)
    latency.legend(loc="upper left", fontsize=7)
    for axis in (rate, latency):
        axis.grid(True, alpha=0.3)
    verdict = "passed" if data["ok"] else "FAILED"
    figure.suptitle(f"{title}: {verdict}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
