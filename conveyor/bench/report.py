"""Turn measured rows into the text table and the JSON document.

The table is for people: medians with SI prefixes, a ± noise figure, the server's CPU per
operation where the workload measures it, and the two ratios the project steers by
(conveyor/asyncio and conveyor/uvloop). Echo rows get a ``ceiling`` column, the C echo
server under the same load, and a ``bare-py`` column, the least Python that echoes
(``bare_echo.py``) under the same interpreter and load. The JSON keeps every sample so a
later script can redo the statistics.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from .harness import BARE, CEILING, Row

__all__ = ["RATIOS", "format_rate", "format_table", "to_json"]

#: Above this share of a core, the load generator may be what limits a row's rate.
BUSY_CLIENT = 0.9

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
    if samples.cpu_median is not None:
        text += f" {samples.cpu_median * 1e6:.3g}µs"
    if samples.errors:
        text += " !"
    return text


def _columns(rows: list[Row], loop_names: list[str]) -> list[str]:
    """The loops, then the pure-Python and C ceilings when some row has them."""
    extra = [name for name in (BARE, CEILING) if any(name in row.by_loop for row in rows)]
    return [*loop_names, *extra]


def _client_notes(rows: list[Row]) -> list[str]:
    """Whether the load generator kept up: the busiest run, and every run near a full core."""
    busiest = [(max(s.client_load), row.label, name) for row in rows
               for name, s in row.by_loop.items() if s.client_load]
    if not busiest:
        return []
    notes = [f"{label} under {name}: the load generator used {load:.0%} of a core, so the "
             "rate may be the client's limit" for load, label, name in sorted(busiest)
             if load > BUSY_CLIENT]
    if not notes:
        load, label, name = max(busiest)
        notes.append(f"the load generator used at most {load:.0%} of a core ({label} under "
                     f"{name}): it was not what limited the rates")
    return notes


def _ratio_cell(row: Row, numerator: str, denominator: str) -> str:
    value = row.ratio(numerator, denominator)
    return "-" if value is None else f"{value:.2f}x"


def format_table(rows: list[Row], loop_names: list[str], *, repeat: int,
                 notes: list[str] = (), python: str | None = None,
                 load: str | None = None) -> str:
    """The human-readable result: header lines, the table, then notes.

    ``python`` is the version the workloads ran under (default: this interpreter's);
    ``load`` says what loaded the servers (LoadPlan.describe()).
    """
    columns = _columns(rows, loop_names)
    header = ["workload", "unit", *columns, *(f"{a}/{b}" for a, b in RATIOS)]
    body = [[row.label, row.workload.unit,
             *(_cell(row, name) if name in row.by_loop else "" for name in columns),
             *(_ratio_cell(row, a, b) for a, b in RATIOS)] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        first, rest = line[0].ljust(widths[0]), line[1:]
        return "  ".join([first, *(c.rjust(w) for c, w in zip(rest, widths[1:]))]).rstrip()

    quick = " (quick sizes)" if any(row.quick for row in rows) else ""
    lines = [f"conveyor bench: median of {repeat} run(s) per cell, one process per run{quick}; "
             f"Python {python or platform.python_version()} on {platform.system()} "
             f"{platform.machine()}"]
    if any(s.cpu_per_op for row in rows for s in row.by_loop.values()):
        lines.append("cells: rate ±spread, then the server's CPU per operation (µs, user + "
                     "system, over the measured window)")
    if BARE in columns:
        lines.append(f"{BARE}: a Python epoll echo server with nothing but os.read and "
                     "os.write, under the same load: the most a Python loop can do here")
    if CEILING in columns:
        lines.append(f"{CEILING}: a C epoll echo server under the same load, the most any "
                     "server can do here")
    if load:
        lines.append(load)
    lines += ["", fmt(header), fmt(["-" * w for w in widths])]
    lines.extend(fmt(line) for line in body)
    failed = [(row.label, name, samples.errors[0])
              for row in rows for name, samples in row.by_loop.items() if samples.errors]
    footer = list(notes) + _client_notes(rows)
    footer.extend(f"{label} under {loop} failed: {err}" for label, loop, err in failed)
    if failed:
        footer.append("'!' marks a median taken over fewer runs because some failed")
    if footer:
        lines.append("")
        lines.extend(f"note: {text}" for text in footer)
    return "\n".join(lines)


def to_json(rows: list[Row], loop_names: list[str], *, repeat: int,
            notes: list[str] = (), interpreter: dict[str, Any] | None = None,
            load: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything measured, as plain data.

    ``interpreter`` is what the workloads ran under (loops.describe() of it; default: this
    one); ``load`` is the LoadPlan, as a dict.
    """
    interpreter = interpreter or {"sys_version": sys.version,
                                  "implementation": platform.python_implementation(),
                                  "executable": sys.executable}
    results = []
    for row in rows:
        results.append({
            "suite": row.suite,
            "workload": row.workload.name,
            "unit": row.workload.unit,
            "params": row.arguments,
            "loops": {
                name: {
                    "median": s.median,
                    "rates": s.rates,
                    "seconds": s.seconds,
                    "errors": s.errors,
                    "loop_type": s.loop_type,
                    "cpu_per_op": s.cpu_per_op,
                    "client_load": s.client_load,
                } for name, s in row.by_loop.items()
            },
            "ratios": {f"{a}/{b}": row.ratio(a, b) for a, b in RATIOS},
        })
    return {
        "python": interpreter["sys_version"],
        "implementation": interpreter["implementation"],
        "executable": interpreter["executable"],
        "bench_python": sys.version,
        "load": load,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "repeat": repeat,
        "quick": any(row.quick for row in rows),
        "loops": list(loop_names),
        "notes": list(notes),
        "results": results,
    }
