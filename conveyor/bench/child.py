"""One measurement, in a process of its own.

The harness starts ``python -m conveyor.bench.child SUITE WORKLOAD LOOP [--quick] [--set JSON]``
(``--set``: parameter overrides, such as the command line's ``--duration``) once per
(workload, loop, repetition), so no loop inherits another's imports, caches, heap or
garbage. The child builds the loop, runs the workload once, and prints one line
``RESULT_MARKER {json}`` on stdout; anything else the workload prints is ignored. Failures
exit non-zero with the traceback on stderr, which the harness reports.

A child that measures asyncio or uvloop does not run ``conveyor/__init__.py``
(:func:`command`): importing all of conveyor would change the process it measures. It is
not only time and memory: the allocations and frees of a large import move glibc's dynamic
mmap threshold, and that decides whether stock asyncio's ``recv(256 KiB)`` maps and unmaps
memory on every read, 3x in asyncio's 1 KiB echo (docs/bench.md has the figures). An
asyncio child that imported conveyor would measure asyncio inside conveyor's history.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import loops, registry

__all__ = ["RESULT_MARKER", "measure", "main", "command", "conveyor_env"]

RESULT_MARKER = "@conveyor-bench-result"

#: ``python -c`` program for a child that must not execute conveyor/__init__.py: an empty
#: package module stands in for ``conveyor`` (its path is argv[1]), so ``conveyor.bench``
#: and whatever the workload itself imports (``conveyor.files`` for the fs suite) load, and
#: nothing else of conveyor does.
_WITHOUT_CONVEYOR = """\
import sys, types
package = types.ModuleType("conveyor")
package.__path__ = [sys.argv.pop(1)]
sys.modules["conveyor"] = package
from conveyor.bench.child import main
sys.exit(main(sys.argv[1:]))
"""


def command(python: str, suite: str, workload: str, loop: str) -> list[str]:
    """The command line of a child measuring ``suite.workload`` under ``loop``.

    Only a child measuring conveyor imports the conveyor package; see the module docstring.
    """
    if loop == "conveyor":
        return [python, "-m", f"{__package__}.child", suite, workload, loop]
    package = str(Path(__file__).resolve().parents[1])
    return [python, "-c", _WITHOUT_CONVEYOR, package, suite, workload, loop]


def conveyor_env() -> dict[str, str]:
    """The environment for a process that must import this very copy of conveyor.

    The bench's children (servers under any interpreter ``--python`` names, the Python load
    generator) put this package's parent directory first on ``PYTHONPATH``, so they measure
    the conveyor that launched them, not whichever one their site-packages holds.
    """
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not path else root + os.pathsep + path
    return env


def _split(value: Any, elapsed: float) -> registry.Measured:
    """A workload returns ops, (ops, seconds) when it timed itself, or a Measured."""
    if isinstance(value, registry.Measured):
        return value
    if isinstance(value, tuple):
        ops, seconds = value
        return registry.Measured(int(ops), float(seconds))
    if not isinstance(value, int):
        raise TypeError("a workload must return an int, (ops, seconds) or a Measured, "
                        f"not {value!r}")
    return registry.Measured(value, elapsed)


def measure(workload: registry.Workload, loop_name: str, quick: bool,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``workload`` once under ``loop_name`` and return what was measured."""
    make_loop = loops.factory(loop_name)
    args = workload.arguments(quick, overrides)
    loop_type = ""

    if workload.is_async:
        async def timed() -> tuple[Any, float]:
            nonlocal loop_type
            loop_type = _describe(asyncio.get_running_loop())
            gc.collect()
            start = time.perf_counter()
            value = await workload.func(**args)
            return value, time.perf_counter() - start

        with asyncio.Runner(loop_factory=make_loop) as runner:
            value, elapsed = runner.run(timed())
    else:
        loop = make_loop()
        try:
            loop_type = _describe(loop)
            gc.collect()
            start = time.perf_counter()
            value = workload.func(loop, **args)
            elapsed = time.perf_counter() - start
        finally:
            loop.close()

    measured = _split(value, elapsed)
    if measured.seconds <= 0:
        raise ValueError(f"workload {workload.name!r} reported {measured.seconds} s")
    return {**result_of(measured), "loop_type": loop_type}


def result_of(measured: registry.Measured) -> dict[str, Any]:
    """One run's figures as the harness keeps them (the CPU figures only when known)."""
    result = {"ops": measured.ops, "seconds": measured.seconds,
              "rate": measured.ops / measured.seconds}
    if measured.cpu is not None:
        result["cpu"] = measured.cpu
    if measured.client_cpu is not None:
        result["client_cpu"] = measured.client_cpu
    return result


def _describe(loop: asyncio.AbstractEventLoop) -> str:
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.child")
    parser.add_argument("suite")
    parser.add_argument("workload")
    parser.add_argument("loop", choices=loops.LOOP_NAMES)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--set", type=json.loads, default={}, metavar="JSON")
    ns = parser.parse_args(argv)

    workloads = {w.name: w for w in registry.load_suite(ns.suite)}
    result = measure(workloads[ns.workload], ns.loop, ns.quick, ns.set)
    sys.stdout.flush()
    print(RESULT_MARKER, json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
