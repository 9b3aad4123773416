"""Turn measured rows into the text table and the JSON document.

The table is for people: medians with SI prefixes, a ± noise figure, and the two ratios the
project steers by (conveyor/asyncio and conveyor/uvloop). The JSON keeps every sample so
a later script can redo the statistics.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from .harness import Row

__all__ = ["RATIOS", "format_rate", "format_table", "to_json"]

#: (numerator, denominator) pairs shown as ratio columns, always in this order.
RATIOS: tuple[tuple[str, str], ...] = (("conveyor", "asyncio"), ("conveyor", "uvloop"))


def format_rate(rate: float) -> str:
    """``1234567.0`` -> ``'1.23M'``: three significant figures, SI prefix."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.3g}{prefix}"
    return f"{rate:.3g}"


def _cell(row: Row, loop: str) -> str:
    samples = row.by_loop[loop]
    if samples.median is None:
        return "error" if samples.errors else "-"
    text = format_rate(samples.median)
    if samples.spread is not None:
        text += f" ±{samples.spread * 100:.0f}%"
    if samples.errors:
        text += " !"
    return text


def _ratio_cell(row: Row, numerator: str, denominator: str) -> str:
    value = row.ratio(numerator, denominator)
    return "-" if value is None else f"{value:.2f}x"


def format_table(rows: list[Row], loop_names: list[str], *, repeat: int,
                 notes: list[str] = ()) -> str:
    """The human-readable result: a header line, the table, then notes."""
    header = ["workload", "unit", *loop_names, *(f"{a}/{b}" for a, b in RATIOS)]
    body = [[row.label, row.workload.unit,
             *(_cell(row, name) for name in loop_names),
             *(_ratio_cell(row, a, b) for a, b in RATIOS)] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        first, rest = line[0].ljust(widths[0]), line[1:]
        return "  ".join([first, *(c.rjust(w) for c, w in zip(rest, widths[1:]))]).rstrip()

    quick = " (quick sizes)" if any(row.quick for row in rows) else ""
    lines = [f"conveyor bench: median of {repeat} run(s) per cell, one process per run{quick}; "
             f"Python {platform.python_version()} on {platform.system()} {platform.machine()}",
             "",
             fmt(header),
             fmt(["-" * w for w in widths])]
    lines.extend(fmt(line) for line in body)
    failed = [(row.label, name, row.by_loop[name].errors[0])
              for row in rows for name in loop_names if row.by_loop[name].errors]
    footer = list(notes)
    footer.extend(f"{label} under {loop} failed: {err}" for label, loop, err in failed)
    if failed:
        footer.append("'!' marks a median taken over fewer runs because some failed")
    if footer:
        lines.append("")
        lines.extend(f"note: {text}" for text in footer)
    return "\n".join(lines)


def to_json(rows: list[Row], loop_names: list[str], *, repeat: int,
            notes: list[str] = ()) -> dict[str, Any]:
    """Everything measured, as plain data."""
    results = []
    for row in rows:
        results.append({
            "suite": row.suite,
            "workload": row.workload.name,
            "unit": row.workload.unit,
            "params": row.workload.arguments(row.quick),
            "loops": {
                name: {
                    "median": s.median,
                    "rates": s.rates,
                    "seconds": s.seconds,
                    "errors": s.errors,
                    "loop_type": s.loop_type,
                } for name, s in row.by_loop.items()
            },
            "ratios": {f"{a}/{b}": row.ratio(a, b) for a, b in RATIOS},
        })
    return {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "repeat": repeat,
        "quick": any(row.quick for row in rows),
        "loops": list(loop_names),
        "notes": list(notes),
        "results": results,
    }
