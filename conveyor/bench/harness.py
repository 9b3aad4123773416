"""Run every (workload, loop) pair N times, one child process per run, and keep the samples.

Runs are interleaved: repetition 1 of every workload under every loop, then repetition 2,
and so on. Noise from other processes on a shared machine then spreads over all loops
instead of landing on whichever loop happened to run during it, and the medians compare
like with like.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .child import RESULT_MARKER
from .registry import Workload

__all__ = ["Samples", "Row", "run_matrix", "run_child"]


@dataclass
class Samples:
    """The runs of one workload under one loop."""

    rates: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    loop_type: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    @property
    def spread(self) -> float | None:
        """Half the min-max range as a fraction of the median: a rough noise figure."""
        if len(self.rates) < 2 or not self.median:
            return None
        return (max(self.rates) - min(self.rates)) / 2 / self.median


@dataclass
class Row:
    """One line of the result table: a workload and its samples per loop."""

    suite: str
    workload: Workload
    quick: bool
    by_loop: dict[str, Samples]

    @property
    def label(self) -> str:
        return f"{self.suite}.{self.workload.name}"

    def ratio(self, numerator: str, denominator: str) -> float | None:
        top = self.by_loop.get(numerator)
        bottom = self.by_loop.get(denominator)
        if top is None or bottom is None or top.median is None or not bottom.median:
            return None
        return top.median / bottom.median


def _child_env() -> dict[str, str]:
    """The child must import this very copy of conveyor, even when run from elsewhere."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not path else root + os.pathsep + path
    return env


def run_child(suite: str, workload: str, loop: str, *, quick: bool,
              timeout: float) -> dict[str, Any]:
    """Measure once in a fresh interpreter; returns the child's result or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "conveyor.bench.child", suite, workload, loop]
    if quick:
        cmd.append("--quick")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_child_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER) and proc.returncode == 0:
            return json.loads(line[len(RESULT_MARKER):])
    tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return {"error": tail[0], "stderr": proc.stderr}


Progress = Callable[[int, int, str, str, dict[str, Any]], None]


def run_matrix(pairs: list[tuple[str, Workload]], loop_names: list[str], *, repeat: int,
               quick: bool, timeout: float, progress: Progress | None = None) -> list[Row]:
    """Measure every pair under every loop ``repeat`` times and return one Row per pair."""
    rows = [Row(suite, w, quick, {name: Samples() for name in loop_names}) for suite, w in pairs]
    total = repeat * len(rows) * len(loop_names)
    done = 0
    for _ in range(repeat):
        for row in rows:
            for name in loop_names:
                result = run_child(row.suite, row.workload.name, name, quick=quick,
                                   timeout=timeout)
                samples = row.by_loop[name]
                if "error" in result:
                    samples.errors.append(result["error"])
                else:
                    samples.rates.append(result["rate"])
                    samples.seconds.append(result["seconds"])
                    samples.loop_type = result.get("loop_type", "")
                done += 1
                if progress is not None:
                    progress(done, total, row.label, name, result)
    return rows
