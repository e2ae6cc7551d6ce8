"""How the shell shows what the replicas answered: text tables and JSON documents.

Pure functions of the answers (tools/shell/backend.py), so they are tested
without a cluster. Columns are replicas in config order; a replica that did not
answer is shown as such, with why, never silently left out.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from ledgerpaxos import constants
from ledgerpaxos.client import TransferReply
from ledgerpaxos.replicas import ballot_key, highest_leader
from ledgerpaxos.testsets.driver import TxnResult
from tools.shell.backend import LoadResult, NextResult, NodeAnswer
from tools.tables import format_table

STATUS_LEGEND = "E executed · C committed · A accepted · X purged (in a checkpoint) · - nothing known · ? no answer"


def _state(answer: NodeAnswer) -> str:
    if answer.body is None:
        return "down"
    if answer.body.get("paused"):
        return "paused"
    return "live" if answer.body.get("alive", True) else "dead"


def _down_notes(answers: Mapping[str, NodeAnswer]) -> list[str]:
    return [
        f"{a.node}: {a.error}" + (f"; {a.hint}" if a.hint else "")
        for a in answers.values()
        if a.body is None
    ]


# ------------------------------------------------------------------ print db


def db_json(answers: Mapping[str, NodeAnswer]) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    for node, answer in answers.items():
        if answer.body is None:
            nodes[node] = {"alive": None, "balances": None, "error": answer.error}
        else:
            nodes[node] = {"alive": answer.body["alive"], "balances": answer.body["balances"]}
    return {"nodes": nodes}


def db_accounts(answers: Mapping[str, NodeAnswer]) -> list[str]:
    """The accounts of the answered page, in account order (a replica that is
    behind may not know the newest openings yet)."""
    names: dict[str, None] = {}
    for answer in answers.values():
        if answer.body is not None:
            names.update(dict.fromkeys(answer.body["balances"]))
    return list(names)


def db_page_note(answers: Mapping[str, NodeAnswer]) -> str:
    """Where the page sits among all accounts, when they do not fit one page."""
    bodies = [a.body for a in answers.values() if a.body is not None]
    if not bodies:
        return ""
    body = max(bodies, key=lambda b: b.get("accounts", 0))
    count, start, after = body.get("accounts"), body.get("start", 0), body.get("next")
    if count is None or (start == 0 and after is None):
        return ""
    shown = len(body["balances"])
    more = f"; `print db --from {after}` shows the next" if after is not None else ""
    return (
        f"\naccounts {start + 1:,}-{start + shown:,} of {count:,} (total is of this page; "
        f"all accounts hold {body['total']:,}){more}"
    )


def render_db(answers: Mapping[str, NodeAnswer], accounts: Sequence[str]) -> str:
    """Accounts as rows, replicas as columns; a live replica whose balance differs
    from what most live replicas show is marked with *."""
    nodes = list(answers)
    live = [n for n in nodes if _state(answers[n]) == "live"]
    marked = False
    rows: list[list[str]] = []
    sums: dict[str, int] = collections.Counter()
    for account in [*accounts, None]:
        cells: list[str] = []
        if account is None:
            values = {n: sums[n] for n in nodes if answers[n].body is not None}
        else:
            values = {
                n: answers[n].body["balances"].get(account)  # type: ignore[index]
                for n in nodes
                if answers[n].body is not None
            }
            for n, v in values.items():
                sums[n] += v or 0
        common = collections.Counter(values[n] for n in live).most_common(1)
        agreed = common[0][0] if common else None
        for n in nodes:
            if n not in values:
                cells.append("?")
            elif n in live and account is not None and values[n] != agreed:
                cells.append(f"{values[n]}*")
                marked = True
            else:
                cells.append(f"{values[n]} ")
        rows.append(["total" if account is None else account, *cells])
    if not marked:  # no column of marks: no trailing pad either
        rows = [[r[0], *(c.rstrip() for c in r[1:])] for r in rows]
    header = ["account", *nodes]
    states = ["", *(_state(answers[n]) for n in nodes)]
    table = format_table(header, [states, *rows], align="l" + "r" * len(nodes))
    notes = []
    if marked:
        notes.append("* differs from what most live replicas show")
    if any(_state(a) == "dead" for a in answers.values()):
        notes.append(
            "dead: switched off by a test set, `alive NODE off` or `kill leader`; it ignores all "
            "messages, so its balances may be behind (`alive NODE on` brings it back)"
        )
    notes += _down_notes(answers)
    return "\n".join([table, *notes])


# ------------------------------------------------------------------ print log


def log_json(answers: Mapping[str, NodeAnswer]) -> dict[str, Any]:
    return {"nodes": {n: _body_or_error(a, "entries") for n, a in answers.items()}}


def render_log(answers: Mapping[str, NodeAnswer]) -> str:
    parts = []
    for node, answer in answers.items():
        if answer.body is None:
            parts.append(f"{node}: {answer.error}")
            continue
        entries = answer.body["entries"]
        rows = []
        for entry in entries:
            batch = entry["batch"] or ["no-op"]
            rows.append([entry["slot"], entry["ballot"], entry["status"], batch[0]])
            rows.extend(["", "", "", command] for command in batch[1:])
        title = f"{node}: {len(entries)} log entries (slots above its last purge)"
        older = answer.body.get("older_left_out", 0)
        if older:
            title += f"; {older} older ones not shown"
        if not rows:
            parts.append(f"{node}: no log entries")
        else:
            parts.append(
                title + "\n" + format_table(["slot", "ballot", "status", "batch"], rows, align="rl")
            )
    return "\n\n".join(parts) + "\n" + STATUS_LEGEND


# ------------------------------------------------------------------ print status


def status_json(answers: Mapping[str, NodeAnswer]) -> dict[str, Any]:
    return {"nodes": {n: _body_or_error(a, "status") for n, a in answers.items()}}


def render_status(answers: Mapping[str, NodeAnswer]) -> str:
    """A slot × replica grid of status letters."""
    slots = sorted(
        {int(s) for a in answers.values() if a.body is not None for s in a.body["status"]}
    )
    rows = []
    for slot in slots:
        cells = []
        for answer in answers.values():
            if answer.body is None:
                cells.append("?")
            else:
                cells.append(answer.body["status"].get(str(slot), "-"))
        rows.append([slot, *cells])
    if not rows:
        table = "no slots yet"
    else:
        table = format_table(["slot", *answers], rows, align="r")
    return "\n".join([table, STATUS_LEGEND, *_down_notes(answers)])


# ------------------------------------------------------------------ print view


def view_json(answers: Mapping[str, NodeAnswer]) -> dict[str, Any]:
    nodes = {}
    for n, a in answers.items():
        nodes[n] = dict(a.body) if a.body is not None else {"error": a.error}
    return {"leader": current_leader(answers), "nodes": nodes}


def current_leader(answers: Mapping[str, NodeAnswer]) -> str | None:
    """The alive replica leading with the highest ballot, if any."""
    return highest_leader({n: a.body for n, a in answers.items() if a.body is not None})


def render_view(answers: Mapping[str, NodeAnswer]) -> str:
    rows = []
    for node, answer in answers.items():
        b = answer.body
        if b is None:
            rows.append([node, "down", "?", "?", "?", "?", "?", "?", "?"])
        else:
            rows.append(
                [
                    node,
                    _state(answer),
                    b["role"],
                    b["leader"] or "-",
                    b["ballot"],
                    b["promised"],
                    b["commit_slot"],
                    b["executed_slot"],
                    b["checkpoint_slot"],
                ]
            )
    table = format_table(
        [
            "node",
            "state",
            "role",
            "leader",
            "ballot",
            "promised",
            "commit",
            "executed",
            "checkpoint",
        ],
        rows,
        align="llllllrrr",
    )
    leader = current_leader(answers)
    if leader is not None:
        ballot = answers[leader].body["ballot"]  # type: ignore[index]
        followers = [
            n
            for n, a in answers.items()
            if n != leader
            and a.body is not None
            and a.body["alive"]
            and a.body["leader"] == leader
            and a.body["ballot"] == ballot
        ]
        summary = (
            f"leader: {leader} (ballot {ballot}), followed by {', '.join(followers) or 'nobody'}"
        )
    else:
        summary = "leader: none among the live replicas (an election may be under way)"
    seen: dict[tuple[tuple[int, int], str], list[str]] = {}
    for node, answer in answers.items():
        for view in (answer.body or {}).get("views", []):
            seen.setdefault((ballot_key(view["ballot"]), view["leader"]), []).append(node)
    view_rows = [
        [f"{key[0]}.{key[1]}", leader_id, " ".join(nodes)]
        for (key, leader_id), nodes in sorted(seen.items())
    ]
    views = (
        format_table(["ballot", "leader", "seen by"], view_rows) if view_rows else "no views yet"
    )
    return "\n".join(
        [
            summary,
            "",
            table,
            "",
            "views seen (ballot, leader, replicas that recorded it):",
            views,
            *_down_notes(answers),
            *_rejoin_notes(answers),
            *_paused_notes(answers),
        ]
    )


def _paused_notes(answers: Mapping[str, NodeAnswer]) -> list[str]:
    """Replicas paused by their disk: up, acknowledging nothing until it takes writes."""
    return [
        f"{node} is paused ({answer.body['paused']}): it acknowledges nothing and "
        "resumes by itself once its disk takes writes again"
        for node, answer in answers.items()
        if answer.body is not None and answer.body.get("paused")
    ]


def _rejoin_notes(answers: Mapping[str, NodeAnswer]) -> list[str]:
    """Replicas rejoining after a lost or damaged disk, and where they stand."""
    return [
        f"{node} is rejoining after a lost or damaged disk (it votes for nothing yet): "
        f"{answer.body['rejoin']}"
        for node, answer in answers.items()
        if answer.body is not None and answer.body.get("rejoin")
    ]


# ------------------------------------------------------------------ load, next, transfer, balance


def render_load(result: LoadResult) -> str:
    first = result.sets[0]
    return (
        f"loaded {result.path}: {len(result.sets)} sets, {result.transfers} transfers; "
        f"`next` runs set {first.number} (live {' '.join(first.live_nodes) or 'none'})"
    )


def progress_line(set_number: int, done: int, total: int) -> str:
    return f"set {set_number}: transfers {done}/{total} done"


def _txn(r: TxnResult) -> str:
    return f"{r.txn} (set {r.set_number}, line {r.txn.line})"


def render_next(result: NextResult, *, wait_s: float) -> str:
    report = result.report
    live = " ".join(report.live_nodes) or "none"
    lines = []
    if report.done:
        lines.append(f"set {report.number} (live {live}): done")
    else:
        lines.append(
            f"set {report.number} (live {live}): stuck, nothing completed for {wait_s:g} s"
        )
    if report.unreachable:
        lines.append(
            f"  unreachable, so not switched on or off: {', '.join(report.unreachable)} (crashed or not started?)"
        )
    if result.earlier_completed:
        lines.append(
            f"  {len(result.earlier_completed)} transfers left pending by earlier sets completed"
        )
    applied = sum(1 for r in report.finished if r.reply is not None and r.reply.ok)
    total = len(report.finished) + sum(1 for r in report.pending if r.set_number == report.number)
    lines.append(
        f"  this set: {len(report.finished)} of {total} transfers answered: "
        f"{applied} applied, {len(report.finished) - applied} rejected"
    )
    for r in result.rejected:
        assert r.reply is not None
        lines.append(f"  rejected {_txn(r)}: {r.reply.reason}")
    if report.killed:
        lines.append(f"  leader killed (LF): {', '.join(report.killed)}")
    if report.pending:
        lines.append(
            f"  {len(report.pending)} transfers pending; they keep retrying, and a later `next` that "
            "brings a majority back completes them:"
        )
        lines.extend(f"    {_txn(r)}" for r in report.pending)
        if result.alive:
            lines.append(f"  why: {_why(result)}")
    if result.remaining:
        lines.append(f"{result.remaining} of {result.total_sets} sets left")
    else:
        lines.append(f"that was the last of {result.total_sets} sets")
    return "\n".join(lines)


def _why(result: NextResult) -> str:
    alive = result.alive
    up = [n for n, a in alive.items() if a]
    others = [f"{n} {'dead' if a is False else 'unreachable'}" for n, a in alive.items() if not a]
    state = f"alive {', '.join(up) or 'none'}" + (f"; {', '.join(others)}" if others else "")
    if len(up) < result.majority:
        return f"no majority: {state} ({result.majority} of {len(alive)} needed)"
    return f"a majority is alive ({state}) but nothing completed: an election under way? see `print view`"


def render_transfer(sender: str, receiver: str, amount: int, reply: TransferReply) -> str:
    if reply.ok:
        return f"done: ({sender}, {receiver}, {amount}) applied (leader {reply.leader})"
    return f"rejected: ({sender}, {receiver}, {amount}): {reply.reason}"


def render_balances(balances: Mapping[str, int], accounts: Sequence[str] = ()) -> str:
    if len(accounts) == 1:
        account = accounts[0]
        return (
            f"{account}: {balances[account]}"
            if account in balances
            else f"{account}: no such account"
        )
    rows: list[list[Any]] = [[a, b] for a, b in balances.items()]
    missing = [a for a in accounts if a not in balances]
    table = format_table(["account", "balance"], rows, align="lr")
    notes = [f"no such account: {', '.join(missing)}"] if missing else []
    if not accounts and len(balances) >= constants.read_balances_max:
        notes.append(
            f"the first {len(balances):,} accounts; name accounts to read others "
            "(`balance ACCOUNT...`), or page through them with `print db --from POSITION`"
        )
    return "\n".join([table, *notes])


def render_openings(replies: Sequence[tuple[str, TransferReply]], accounts: Sequence[str]) -> str:
    lines = []
    results = [(owner, r) for owner, reply in replies for r in reply.results]
    for name, (owner, result) in zip(accounts, results, strict=True):
        if result.ok:
            lines.append(f"opened {name} (owner {owner}, balance 0)")
        else:
            lines.append(f"refused {name}: {result.reason}")
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers


def _body_or_error(answer: NodeAnswer, key: str) -> dict[str, Any]:
    if answer.body is None:
        return {"error": answer.error}
    return {key: answer.body[key]}
