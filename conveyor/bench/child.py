"""One measurement, in a process of its own.

The harness starts ``python -m conveyor.bench.child SUITE WORKLOAD LOOP [--quick]`` once per
(workload, loop, repetition), so no loop inherits another's imports, caches, heap or
garbage. The child builds the loop, runs the workload once, and prints one line
``RESULT_MARKER {json}`` on stdout; anything else the workload prints is ignored. Failures
exit non-zero with the traceback on stderr, which the harness reports.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from typing import Any

from . import loops, registry

__all__ = ["RESULT_MARKER", "measure", "main"]

RESULT_MARKER = "@conveyor-bench-result"


def _split(value: Any, elapsed: float) -> tuple[int, float]:
    """A workload returns ops, or (ops, seconds) when it timed itself."""
    if isinstance(value, tuple):
        ops, seconds = value
        return int(ops), float(seconds)
    if not isinstance(value, int):
        raise TypeError(f"a workload must return an int or (ops, seconds), not {value!r}")
    return value, elapsed


def measure(workload: registry.Workload, loop_name: str, quick: bool) -> dict[str, Any]:
    """Run ``workload`` once under ``loop_name`` and return what was measured."""
    make_loop = loops.factory(loop_name)
    args = workload.arguments(quick)
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

    ops, seconds = _split(value, elapsed)
    if seconds <= 0:
        raise ValueError(f"workload {workload.name!r} reported {seconds} s")
    return {"ops": ops, "seconds": seconds, "rate": ops / seconds, "loop_type": loop_type}


def _describe(loop: asyncio.AbstractEventLoop) -> str:
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench.child")
    parser.add_argument("suite")
    parser.add_argument("workload")
    parser.add_argument("loop", choices=loops.LOOP_NAMES)
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args(argv)

    workloads = {w.name: w for w in registry.load_suite(ns.suite)}
    result = measure(workloads[ns.workload], ns.loop, ns.quick)
    sys.stdout.flush()
    print(RESULT_MARKER, json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
