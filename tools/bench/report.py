"""The benchmark's output: the table, the comparisons with PySyncObj and etcd, --json and --plot."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from tools.bench import versus_etcd as bench_etcd
from tools.bench import versus_pysyncobj as bench_pysyncobj
from tools.bench.run import BenchError, prog

# ---------------------------------------------------------------- output


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _count(n: int) -> str:
    """1,000 -> 1k, 1,000,000 -> 1M: the accounts column."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n:,}"


def accounts_sweep(runs: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Per load of the accounts sweep ("16x10"), transfers/s per ledger size
    (TLS on; the last run of each size: --matrix runs the sweep last, its
    sizes one after the other)."""
    sweep: dict[str, dict[int, float]] = {}
    for run in runs:
        if not run.get("tls", False):
            continue
        load = f"{run['clients']}x{run['transfers_per_request']}"
        sweep.setdefault(load, {})[run["accounts"]] = run["transfers_per_s"]
    return {load: sizes for load, sizes in sweep.items() if len(sizes) > 1}


def render_accounts_sweep(runs: list[dict[str, Any]]) -> str:
    """How throughput holds up as the ledger grows (the issue's 0.85x target)."""
    lines = []
    for load, sizes in accounts_sweep(runs).items():
        smallest = min(sizes)
        parts = [
            f"{_count(n)} {rate:,.0f}/s ({rate / sizes[smallest]:.2f}x)"
            for n, rate in sorted(sizes.items())
        ]
        lines.append(
            f"accounts sweep {load}: " + ", ".join(parts) + f", against {_count(smallest)}"
        )
    return "\n".join(lines)


def _per_process(run: dict[str, Any], values: dict[str, float], decimals: int) -> str:
    """One line of a figure per process of `run`, the leader starred."""
    parts = [
        f"{name}{'*' if name == run['leader'] else ''} {value:.{decimals}f}"
        for name, value in values.items()
    ]
    return f"  {run['clients']}x{run['transfers_per_request']}: " + ", ".join(parts)


def render_table(runs: list[dict[str, Any]]) -> str:
    first = runs[0]
    commit = first["commit"][:12] + (
        " + uncommitted changes" if first["uncommitted_changes"] else ""
    )
    load = max(max(run["load_average_before"][0], run["load_average_after"][0]) for run in runs)
    lines = [
        f"{prog}: {first['replicas']} replicas on 127.0.0.1, fsync {'on' if first['fsync'] else 'OFF'}, "
        f"{first['accounts']:,} accounts (unless a row says), {first['duration_s']:g} s per run, "
        f"{first['cpu_count']} CPUs shared by replicas and load, load average up to {load:.1f}",
        f"code: {commit}",
        "",
    ]
    header = (
        f"{'clients':>7} {'T':>5} {'TLS':>3} {'accounts':>9} {'transfers/s':>12} {'requests/s':>11} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'fsyncs/s':>9}  "
        f"{'CPU s per 1k transfers: leader':>30} {'followers':>9} {'bench':>7}"
    )
    lines += [header, "-" * len(header)]
    for run in runs:
        cpu = run["cpu_s_per_1k_transfers"]
        leader_cpu = cpu.get(run["leader"], math.nan)
        followers = [v for name, v in cpu.items() if name.startswith("n") and name != run["leader"]]
        follower_cpu = sum(followers) / len(followers) if followers else math.nan
        bench_cpu = cpu.get("bench (all)", math.nan)
        lines.append(
            f"{run['clients']:>7} {run['transfers_per_request']:>5} "
            f"{'on' if run.get('tls', False) else 'off':>3} {_count(run['accounts']):>9} "
            f"{run['transfers_per_s']:>12,.0f} "
            f"{run['requests_per_s']:>11,.0f} {_ms(run['p50_ms']):>7} {_ms(run['p90_ms']):>7} "
            f"{_ms(run['p99_ms']):>7} {_ms(run['max_ms']):>7} {run['fsyncs_per_s']:>9,.0f}  "
            f"{leader_cpu:>30.3f} {follower_cpu:>9.3f} {bench_cpu:>7.3f}"
        )
    lines.append("")
    lines.append("CPU seconds per 1,000 transfers, per process (followers: mean above):")
    for run in runs:
        cpu = {k: v for k, v in run["cpu_s_per_1k_transfers"].items() if k != "bench (all)"}
        lines.append(_per_process(run, cpu, 3) + "   (* leader)")
    woken = [run for run in runs if run.get("wakeups_per_request")]
    if woken:
        lines.append("")
        lines.append("Wake-ups per request (voluntary context switches of the main thread):")
        for run in woken:
            lines.append(_per_process(run, run["wakeups_per_request"], 2))
    resident = [run for run in runs if run.get("replica_rss_mib")]
    if resident:
        lines.append("")
        lines.append("Replica memory (resident) at the end of each run, MiB:")
        for run in resident:
            sizes = ", ".join(f"{n} {mib:,.0f}" for n, mib in run["replica_rss_mib"].items())
            lines.append(
                f"  {run['clients']}x{run['transfers_per_request']}, "
                f"{_count(run['accounts'])} accounts: {sizes}"
            )
    lines.append("")
    for run in runs:
        lines.extend(_check_lines(run))
        if run["client_errors"]:
            lines.append(f"  client errors: {'; '.join(run['client_errors'][:3])}")
    return "\n".join(lines)


def render_comparison(runs: list[dict[str, Any]], pysyncobj: dict[str, Any] | None) -> str:
    """PySyncObj's peak next to ours (the issue's 3x target)."""
    if pysyncobj is None:
        return (
            "PySyncObj comparison skipped: not installed "
            f"({bench_pysyncobj.install_hint}; an optional comparison)"
        )
    with_tls = [run for run in runs if run.get("tls", False)]
    ours = max(with_tls or runs, key=lambda run: run["transfers_per_s"])
    ratio = (
        ours["transfers_per_s"] / pysyncobj["transfers_per_s"]
        if pysyncobj["transfers_per_s"]
        else math.inf
    )
    return "\n".join(
        [
            bench_pysyncobj.render(pysyncobj),
            f"ours at its best ({ours['clients']}x{ours['transfers_per_request']}, fsync on, "
            f"TLS {'on' if ours.get('tls', False) else 'off'}): "
            f"{ours['transfers_per_s']:,.0f} transfers/s = {ratio:.1f}x PySyncObj's peak "
            f"(no fsync) in the same run",
        ]
    )


ROUND_KEYS = ("clients", "transfers_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms")

# Issue 15's targets against etcd in the same run (TLS on for us): one client's
# transfers/s and p50 as ratios to its puts/s and p50, 64 clients' throughput.
ETCD_TARGETS = {1: (1.4, 0.7), 64: (3.0, None)}


def round_figures(run: dict[str, Any]) -> dict[str, Any]:
    """What a round of the etcd comparison keeps of one of our runs."""
    return {key: run[key] for key in ROUND_KEYS} | {"checked": run_ok(run)}


def _versus(mine: dict[str, Any], load: dict[str, Any]) -> tuple[float, float]:
    """(our transfers/s / its puts/s, our p50 / its p50)."""
    throughput = mine["transfers_per_s"] / load["puts_per_s"] if load["puts_per_s"] else math.inf
    return throughput, mine["p50_ms"] / load["p50_ms"] if load["p50_ms"] else math.nan


def etcd_ratios(etcd: dict[str, Any]) -> dict[int, list[tuple[float, float]]]:
    """Per load (clients), each round's (our transfers/s / its puts/s, our
    p50 / its p50): taken within a round, never across rounds."""
    ratios: dict[int, list[tuple[float, float]]] = {}
    for each in etcd["rounds"]:
        ours = {run["clients"]: run for run in each["ours"]}
        for load in each["etcd"]:
            mine = ours.get(load["clients"])
            if mine is not None:
                ratios.setdefault(load["clients"], []).append(_versus(mine, load))
    return ratios


def render_versus_etcd(etcd: dict[str, Any] | None, *, failed: bool = False) -> str:
    """Each round: our 1x1 and 64x1 (TLS, fsync) and etcd's 1 and 64 clients,
    run one after the other, with the ratios; then the median ratio of the
    rounds, against issue 15's targets."""
    if etcd is None and failed:
        return "etcd comparison: no round completed (its error is above)"
    if etcd is None:
        return (
            "etcd comparison skipped: etcd is not on the PATH "
            f"({bench_etcd.install_hint}; an optional comparison)"
        )
    lines = [
        f"Versus {etcd['system']} ({etcd['members']} members on {bench_etcd.LOOPBACK}, data on "
        f"disk, its fsync per commit, {etcd['value_bytes']}-byte puts through the JSON gateway, "
        "keep-alive, one in flight per client), in rounds of our 1x1 and 64x1 (TLS, fsync) "
        "then etcd's 1 and 64 clients; a ratio is only taken within a round:",
        "",
        f"{'round':>5}  {'clients':>7}  {'ours/s':>8} {'p50 ms':>7} {'p99 ms':>7}   "
        f"{'etcd/s':>8} {'p50 ms':>7} {'p99 ms':>7}   {'ratio':>6} {'p50 ratio':>9}",
    ]
    for number, each in enumerate(etcd["rounds"], 1):
        ours = {run["clients"]: run for run in each["ours"]}
        for load in each["etcd"]:
            mine = ours.get(load["clients"])
            if mine is None:
                continue
            ratio, latency = _versus(mine, load)
            lines.append(
                f"{number:>5}  {load['clients']:>7}  {mine['transfers_per_s']:>8,.0f} "
                f"{_ms(mine['p50_ms']):>7} {_ms(mine['p99_ms']):>7}   "
                f"{load['puts_per_s']:>8,.0f} {_ms(load['p50_ms']):>7} {_ms(load['p99_ms']):>7}   "
                f"{ratio:>5.2f}x {latency:>8.2f}x"
            )
    lines.append("")
    for clients, pairs in etcd_ratios(etcd).items():
        throughput = statistics.median(t for t, _ in pairs)
        latency = statistics.median(p for _, p in pairs)
        spread = f"{min(t for t, _ in pairs):.2f}-{max(t for t, _ in pairs):.2f}x"
        wanted_throughput, wanted_latency = ETCD_TARGETS.get(clients, (None, None))
        verdicts = []
        if wanted_throughput is not None:
            met = "met" if throughput >= wanted_throughput else "not met"
            verdicts.append(f"target at least {wanted_throughput:g}x: {met}")
        if wanted_latency is not None:
            met = "met" if latency <= wanted_latency else "not met"
            verdicts.append(f"p50 at most {wanted_latency:g}x: {met}")
        lines.append(
            f"{clients} client{'s' if clients > 1 else ''}, median of {len(pairs)} round"
            f"{'s' if len(pairs) > 1 else ''}: {throughput:.2f}x etcd's puts/s (rounds {spread}), "
            f"{latency:.2f}x its p50" + (f"; {', '.join(verdicts)}" if verdicts else "")
        )
    return "\n".join(lines)


def render_tls_cost(runs: list[dict[str, Any]]) -> str:
    """What TLS costs, from the runs of one load with it and without (same run)."""
    by_load: dict[tuple[int, int], dict[bool, dict[str, Any]]] = {}
    for run in runs:
        if run["accounts"] != runs[0]["accounts"]:
            continue  # the accounts sweep: TLS on only
        load = (run["clients"], run["transfers_per_request"])
        by_load.setdefault(load, {}).setdefault(bool(run.get("tls", False)), run)
    lines = []
    for (clients, transfers), pair in by_load.items():
        if True in pair and False in pair:
            on, off = pair[True]["transfers_per_s"], pair[False]["transfers_per_s"]
            cost = (1 - on / off) * 100 if off else math.nan
            lines.append(
                f"TLS at {clients}x{transfers}: {on:,.0f} transfers/s against {off:,.0f} "
                f"in plaintext ({cost:+.1f}% cost), p50 {_ms(pair[True]['p50_ms'])} against "
                f"{_ms(pair[False]['p50_ms'])} ms"
            )
    return "\n".join(lines)


def write_json(
    runs: list[dict[str, Any]],
    path: str,
    pysyncobj: dict[str, Any] | None = None,
    etcd: dict[str, Any] | None = None,
) -> None:
    public = [{k: v for k, v in run.items() if not k.startswith("_")} for run in runs]
    document: Any = public[0] if len(public) == 1 else {"runs": public}
    if pysyncobj is not None or etcd is not None:
        document = {"runs": public}
        if pysyncobj is not None:
            document["pysyncobj"] = pysyncobj
        if etcd is not None:
            document["etcd"] = etcd
    Path(path).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_plot(runs: list[dict[str, Any]], path: str) -> None:
    """Throughput over time and the latency distribution, one line per run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install -e '.[plot]'") from None
    sweep = accounts_sweep(runs)
    panels = 3 if sweep else 2
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5))
    over_time, latency = axes[0], axes[1]
    if sweep:
        sizes_axis = axes[2]
        for load, sizes in sweep.items():
            ns = sorted(sizes)
            sizes_axis.plot(ns, [sizes[n] for n in ns], marker="o", label=load)
        sizes_axis.set_xscale("log")
        sizes_axis.set_xlabel("accounts in the ledger")
        sizes_axis.set_ylabel("transfers/s")
        sizes_axis.set_title("throughput by ledger size (TLS on)")
        sizes_axis.set_ylim(bottom=0)
        sizes_axis.grid(True, alpha=0.3)
        sizes_axis.legend()
    for run in runs:
        clients = run["clients"]
        label = f"{clients} client{'s' if clients != 1 else ''} x {run['transfers_per_request']}"
        if run["accounts"] != runs[0]["accounts"]:
            label += f", {_count(run['accounts'])} accounts"
        if not run.get("tls", True):
            label += ", plaintext"
        bucket = run["timeline_bucket_s"]
        series = run["timeline_transfers_per_s"]
        over_time.plot([bucket * (i + 0.5) for i in range(len(series))], series, label=label)
        values = run["_latencies_ms"]
        if values:
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            latency.plot(values, fractions, label=label)
    over_time.set_xlabel("seconds into the run")
    over_time.set_ylabel("transfers/s")
    over_time.set_title("throughput over time")
    over_time.set_yscale("log")
    over_time.grid(True, alpha=0.3)
    over_time.legend()
    latency.set_xscale("log")
    latency.set_xlabel("request latency (ms)")
    latency.set_ylabel("fraction of requests")
    latency.set_title("latency distribution (CDF)")
    latency.grid(True, alpha=0.3)
    latency.legend()
    first = runs[0]
    figure.suptitle(
        f"ledgerpaxos, {first['replicas']} replicas, fsync on, {first['cpu_count']} CPUs, "
        f"commit {first['commit'][:12]}{' +changes' if first['uncommitted_changes'] else ''}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_ok(run: dict[str, Any]) -> bool:
    """The end check of one run: replicas agree, the sum holds, and every
    balance is what the acknowledged transfers give."""
    return bool(
        run["balances_agree"] and run["sum_unchanged"] and run.get("acknowledged_match", True)
    )


def _check_lines(run: dict[str, Any]) -> list[str]:
    name = f"check {run['clients']}x{run['transfers_per_request']}: "
    refused = (
        f"; {run['transfers_refused']:,} transfers refused" if run["transfers_refused"] else ""
    )
    unanswered = run.get("unanswered_transfers", 0)
    if run_ok(run):
        checked = run.get("accounts_checked")
        of = f" of the {checked:,} accounts the load touched" if checked is not None else ""
        return [
            name + f"all {run['replicas']} replicas hold the same state (digests), the sum"
            f"{of} {run['total_before']:,} unchanged, each balance what the acknowledged "
            "transfers give"
            + (f" (within {unanswered:,} unanswered)" if unanswered else "")
            + refused
        ]
    lines = [
        name + f"FAILED: replicas agree={run['balances_agree']}, sum {run['total_after']:,} "
        f"(before {run['total_before']:,})" + refused
    ]
    lines.extend(f"  {line}" for line in run.get("acknowledged_mismatches", []))
    return lines
