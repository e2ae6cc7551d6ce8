"""CSV test sets, the seed's format.

    Set Number,Transactions,Live Nodes
    1,"(A, C, 1)","[n1, n2, n3, n4, n5]"
    ,"(B, E, 1)",
    ,LF,

A row with a set number starts a set and says which replicas are alive for it; rows
with an empty set number add to the current set. `(A, C, 1)`: client A sends 1 from
account A to C. `LF` kills the current leader between the transactions before and
after it, splitting the set into legs.

A malformed file is rejected as a whole: `TestSetError` names the file, the line and
what is wrong.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

import attrs

HEADER = ("Set Number", "Transactions", "Live Nodes")
LEADER_FAILURE = "LF"


class TestSetError(Exception):
    """The test-set file is malformed (the user's to fix)."""

    __test__ = False  # not a pytest class

    def __init__(self, path: str, line: int, problem: str) -> None:
        where = f"{path}: line {line}" if line > 0 else path  # line 0: the file as a whole
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@attrs.frozen(kw_only=True)
class Txn:
    sender: str
    receiver: str
    amount: int
    line: int

    @property
    def client(self) -> str:
        return self.sender

    def __str__(self) -> str:
        return f"({self.sender}, {self.receiver}, {self.amount})"


@attrs.frozen(kw_only=True)
class TestSet:
    __test__ = False

    number: int
    live_nodes: tuple[str, ...]
    legs: tuple[tuple[Txn, ...], ...]  # split by LF: the leader is killed between legs
    line: int

    @property
    def transfers(self) -> tuple[Txn, ...]:
        return tuple(t for leg in self.legs for t in leg)


_TUPLE = re.compile(r"^\(\s*(.*?)\s*\)$", re.S)
_LIST = re.compile(r"^\[\s*(.*?)\s*\]$", re.S)


def parse_test_sets(
    text: str, *, path: str, accounts: Iterable[str], node_ids: Iterable[str]
) -> list[TestSet]:
    accounts = set(accounts)
    node_ids = list(node_ids)
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = _rows_with_lines(text, path)
    if not rows or tuple(c.strip() for c in rows[0][1]) != HEADER:
        raise TestSetError(path, 1, f"the first line must be the header {','.join(HEADER)}")

    sets: list[TestSet] = []
    current: dict | None = None

    def finish() -> None:
        if current is not None:
            legs = tuple(tuple(leg) for leg in current["legs"])
            sets.append(
                TestSet(
                    number=current["number"],
                    live_nodes=current["live"],
                    legs=legs,
                    line=current["line"],
                )
            )

    for line, row in rows[1:]:
        cells = [c.strip() for c in row]
        if not any(cells):
            continue  # a blank line
        if len(cells) > 3 and any(cells[3:]):
            raise TestSetError(
                path, line, f"expected 3 columns ({', '.join(HEADER)}), got {len(cells)}"
            )
        cells += [""] * (3 - len(cells))
        number_cell, txn_cell, live_cell = cells[:3]
        if number_cell:
            try:
                number = int(number_cell)
            except ValueError:
                raise TestSetError(
                    path, line, f"set number {number_cell!r} is not an integer"
                ) from None
            if sets or current is not None:
                previous = current["number"] if current is not None else sets[-1].number
                if number <= previous:
                    raise TestSetError(
                        path,
                        line,
                        f"set {number} comes after set {previous}: set numbers must increase",
                    )
            if not live_cell:
                raise TestSetError(
                    path, line, f'set {number} starts without its Live Nodes, e.g. "[n1, n2, n3]"'
                )
            finish()
            current = {
                "number": number,
                "live": _parse_nodes(live_cell, path, line, node_ids),
                "legs": [[]],
                "line": line,
            }
        else:
            if current is None:
                raise TestSetError(
                    path, line, "the first row after the header must start a set (a set number)"
                )
            if live_cell:
                raise TestSetError(
                    path, line, "Live Nodes may only be given on the row that starts a set"
                )
        assert current is not None
        if not txn_cell:
            raise TestSetError(
                path, line, "empty transaction cell: expected (SENDER, RECEIVER, AMOUNT) or LF"
            )
        if txn_cell.upper() == LEADER_FAILURE:
            current["legs"].append([])
            continue
        current["legs"][-1].append(_parse_txn(txn_cell, path, line, accounts))
    finish()
    if not sets:
        raise TestSetError(path, 0, "the file holds no test set, only its header")
    return sets


def _rows_with_lines(text: str, path: str) -> list[tuple[int, list[str]]]:
    """Every CSV row with the physical line it starts on (a quoted cell may
    hold a line break, so rows and lines are not the same count)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as error:
        raise TestSetError(path, start, f"not valid CSV: {error}") from None
    return rows


def load_test_sets(
    path: str | Path, *, accounts: Iterable[str], node_ids: Iterable[str]
) -> list[TestSet]:
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise TestSetError(name, 0, f"cannot read the file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TestSetError(name, line, "not UTF-8 text") from None
    return parse_test_sets(text, path=name, accounts=accounts, node_ids=node_ids)


def _parse_txn(cell: str, path: str, line: int, accounts: set[str]) -> Txn:
    m = _TUPLE.match(cell)
    if m is None:
        raise TestSetError(
            path, line, f"transaction {cell!r} is not of the form (SENDER, RECEIVER, AMOUNT)"
        )
    parts = [p.strip() for p in m.group(1).split(",")]
    if len(parts) != 3:
        raise TestSetError(
            path,
            line,
            f"transaction {cell!r} has {len(parts)} parts, expected 3: (SENDER, RECEIVER, AMOUNT)",
        )
    sender, receiver, amount_text = parts
    for role, name in (("sender", sender), ("receiver", receiver)):
        if name not in accounts:
            raise TestSetError(
                path,
                line,
                f"unknown {role} account {name!r}; the configured accounts are {', '.join(sorted(accounts))}",
            )
    try:
        amount = int(amount_text)
    except ValueError:
        raise TestSetError(path, line, f"amount {amount_text!r} is not an integer") from None
    return Txn(sender=sender, receiver=receiver, amount=amount, line=line)


def _parse_nodes(cell: str, path: str, line: int, node_ids: list[str]) -> tuple[str, ...]:
    m = _LIST.match(cell)
    if m is None:
        raise TestSetError(path, line, f"live nodes {cell!r} are not of the form [n1, n2, ...]")
    names = [p.strip() for p in m.group(1).split(",")] if m.group(1).strip() else []
    for name in names:
        if name not in node_ids:
            raise TestSetError(
                path, line, f"unknown node {name!r}; the configured nodes are {', '.join(node_ids)}"
            )
    if len(set(names)) != len(names):
        raise TestSetError(path, line, f"a node is listed twice in {cell!r}")
    return tuple(n for n in node_ids if n in names)
