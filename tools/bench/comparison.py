"""What the optional comparisons (versus_pysyncobj.py, versus_etcd.py) share
when run on their own: measure, print, write --json, and say what failed."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def run_alone(
    prog: str,
    measure: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    json_path: str | None,
) -> int:
    """The exit status: 0 measured, 1 failed (RuntimeError or OSError, said on
    stderr), 130 interrupted."""
    try:
        figures = measure()
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    print(render(figures))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2, sort_keys=True)
    return 0
