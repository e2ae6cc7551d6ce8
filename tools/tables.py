"""Plain aligned text tables for the shell (no dependency, no colour).

    >>> print(format_table(["node", "balance"], [["n1", 10], ["n2", 9]], align="lr"))
    node  balance
    n1         10
    n2          9

Cells are turned into text with str(); None becomes "". `align` has one letter per
column, "l" (left) or "r" (right); missing letters mean left. Trailing spaces
are stripped from every line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

column_gap = "  "


def format_table(
    header: Sequence[Any] | None, rows: Sequence[Sequence[Any]], *, align: str = ""
) -> str:
    """Rows of cells as aligned columns, with an optional header row."""
    lines = [
        [_text(c) for c in row] for row in ([header] if header is not None else []) + list(rows)
    ]
    columns = max((len(line) for line in lines), default=0)
    for line in lines:
        line.extend([""] * (columns - len(line)))
    widths = [max((len(line[i]) for line in lines), default=0) for i in range(columns)]
    out = []
    for line in lines:
        cells = [
            cell.rjust(width) if align[i : i + 1] == "r" else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append(column_gap.join(cells).rstrip())
    return "\n".join(out)


def _text(cell: Any) -> str:
    return "" if cell is None else str(cell)
