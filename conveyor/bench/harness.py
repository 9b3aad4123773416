"""Run every (workload, loop) pair N times, one child process per run, and keep the samples.

Runs are interleaved: repetition 1 of every workload under every loop, then repetition 2,
and so on, and the order of the loops turns by one each repetition. Noise from other
processes on a shared machine then spreads over all loops instead of landing on whichever
loop happened to run during it (or always ran first), and the medians compare like with
like.

The children run under the interpreter the bench was given (``--python``), importing the
conveyor that launched them. A served workload's child is pinned to the server's core of
the :class:`~conveyor.bench.loadgen.LoadPlan`, and its load generator to the client's.
Rows whose workload has a ceiling also get the C echo server under the same load, in each
repetition beside the loops, as the pseudo-loop :data:`CEILING`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import loadgen
from .child import RESULT_MARKER, command, conveyor_env, result_of
from .registry import Workload

__all__ = ["CEILING", "BARE", "Samples", "Row", "run_matrix", "run_child", "run_ceiling", "probe"]

#: The column of the C echo server: not a loop, the best any server does under that load.
CEILING = "ceiling"
#: The column of the least Python that echoes (bare_echo.py): the most a Python loop can do.
BARE = "bare-py"


@dataclass
class Samples:
    """The runs of one workload under one loop."""

    rates: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    loop_type: str = ""
    #: The server's CPU seconds per operation, for workloads that measure it.
    cpu_per_op: list[float] = field(default_factory=list)
    #: The load generator's CPU seconds per wall second (1.0: one core kept busy).
    client_load: list[float] = field(default_factory=list)

    def add(self, result: dict[str, Any]) -> None:
        """Keep one run's result (a child's, or ``{"error": ...}``)."""
        if "error" in result:
            self.errors.append(result["error"])
            return
        self.rates.append(result["rate"])
        self.seconds.append(result["seconds"])
        self.loop_type = result.get("loop_type", "")
        if "cpu" in result and result["ops"]:
            self.cpu_per_op.append(result["cpu"] / result["ops"])
        if "client_cpu" in result:
            self.client_load.append(result["client_cpu"] / result["seconds"])

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_per_op) if self.cpu_per_op else None

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
    #: Parameter overrides from the command line (``--duration``).
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def arguments(self) -> dict[str, Any]:
        """What every run of this row was called with."""
        return self.workload.arguments(self.quick, self.overrides)

    @property
    def label(self) -> str:
        return f"{self.suite}.{self.workload.name}"

    def ratio(self, numerator: str, denominator: str) -> float | None:
        top = self.by_loop.get(numerator)
        bottom = self.by_loop.get(denominator)
        if top is None or bottom is None or top.median is None or not bottom.median:
            return None
        return top.median / bottom.median


def probe(python: str) -> dict[str, Any]:
    """What ``python`` is and which loops it can run, asked of it (``conveyor.bench.loops``).

    Raises ``RuntimeError`` when it cannot run this copy of conveyor.
    """
    try:
        proc = subprocess.run([python, "-m", "conveyor.bench.loops"], capture_output=True,
                              text=True, timeout=60, env=conveyor_env(),
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"cannot run {python}: {exc}") from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise RuntimeError(f"{python} cannot run conveyor's bench: {tail[0]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = Path(__file__).resolve().parents[1]
    if Path(found["conveyor"]).resolve().parent != ours:
        raise RuntimeError(f"{python} imports conveyor from {found['conveyor']}, "
                           f"not from {ours.parent}")
    return found


def run_child(suite: str, workload: str, loop: str, *, quick: bool, timeout: float,
              python: str | None = None, plan: loadgen.LoadPlan | None = None,
              pin: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure once in a fresh interpreter; returns the child's result or ``{"error": ...}``.

    ``plan`` goes to the child's load generators; ``pin`` puts the child on the plan's
    server core; ``overrides`` replace the workload's parameters of the same names.
    """
    cmd = command(python or sys.executable, suite, workload, loop)
    if quick:
        cmd.append("--quick")
    if overrides:
        cmd += ["--set", json.dumps(overrides)]
    env = conveyor_env()
    if plan is not None:
        env[loadgen.ENV] = plan.to_env()
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as proc:
        if pin and plan is not None:
            loadgen.pin(proc.pid, plan.server_cpus)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"error": f"timed out after {timeout:g} s"}
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARKER) and proc.returncode == 0:
            return json.loads(line[len(RESULT_MARKER):])
    tail = err.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    return {"error": tail[0], "stderr": err}


def run_ceiling(args: dict[str, Any], plan: loadgen.LoadPlan,
                python: str | None = None) -> dict[str, Any]:
    """The C echo server under the load an echo workload called with ``args`` puts on its own;
    with ``python``, the pure-Python one (bare_echo.py) under that interpreter."""
    try:
        measured = loadgen.ceiling(size=args["size"], connections=args["connections"],
                                   duration=args["duration"], warmup=args["warmup"],
                                   plan=plan, python=python)
    except (OSError, RuntimeError) as exc:
        return {"error": str(exc)}
    what = ("C epoll echo server (echo_server.c)" if python is None
            else "pure-Python epoll echo server (bare_echo.py)")
    return {**result_of(measured), "loop_type": what}


Progress = Callable[[int, int, str, str, dict[str, Any]], None]


def run_matrix(pairs: list[tuple[str, Workload]], loop_names: list[str], *, repeat: int,
               quick: bool, timeout: float, progress: Progress | None = None,
               python: str | None = None, plan: loadgen.LoadPlan | None = None,
               overrides: dict[str, Any] | None = None) -> list[Row]:
    """Measure every pair under every loop ``repeat`` times and return one Row per pair.

    Without a ``plan`` the children make their own (unpinned) and there is no ceiling.
    """
    overrides = dict(overrides or {})
    with_ceiling = plan is not None and plan.echo_server is not None
    rows = []
    for suite, w in pairs:
        names = [*loop_names, *([BARE, CEILING] if with_ceiling and w.ceiling else [])]
        rows.append(Row(suite, w, quick, {name: Samples() for name in names}, overrides))
    total = repeat * sum(len(row.by_loop) for row in rows)
    done = 0
    for rep in range(repeat):
        for row in rows:
            names = list(row.by_loop)
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                if name == CEILING:
                    result = run_ceiling(row.arguments, plan)
                elif name == BARE:
                    result = run_ceiling(row.arguments, plan, python=python or sys.executable)
                else:
                    result = run_child(row.suite, row.workload.name, name, quick=quick,
                                       timeout=timeout, python=python, plan=plan,
                                       pin=row.workload.served, overrides=overrides)
                row.by_loop[name].add(result)
                done += 1
                if progress is not None:
                    progress(done, total, row.label, name, result)
    return rows
