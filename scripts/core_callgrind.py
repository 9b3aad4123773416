"""Instructions per operation of a core bench row, counted by callgrind (deterministic).

    python scripts/core_callgrind.py ROW [LOOP ...] [--python PY] [--toggle FUNCTION]
    python scripts/core_callgrind.py callsoon [LOOP ...]   # loop.call_soon called from C

ROW is one of conveyor/bench/core.py's workloads (callbacks, timers, tasks, gather); LOOP is
asyncio, uvloop or conveyor (default: all three). Each row runs twice under
``valgrind --tool=callgrind``, at a small size and at twice that size, and the figure is the
difference in instructions over the difference in operations: interpreter start-up, imports
and compiling drop out, and a neighbour's CPU load changes nothing (docs/bench.md, "Where
the core rows stop"). The timers row's random plan is drawn inside the count (about 2.6k
instructions per timer on 3.11, 3.3k on 3.13, the same for every loop).

``--toggle FUNCTION`` counts only inside that C function (callgrind's --toggle-collect),
e.g. ``TaskStepMethWrapper_call``: the C Task's steps, with whatever they call.
``callsoon`` times ``fut.add_done_callback(cb)`` on a finished C Future, counted inside
``_asyncio_Future_add_done_callback``: the loop's ``call_soon`` as the C Task and Future
call it (with ``context=``), plus a few dozen instructions of the Future's own.

The conveyor measured is the one this script's checkout holds. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPS = ("asyncio", "uvloop", "conveyor")
#: The row's parameters at size 1 (size 2 doubles the number that scales).
SIZES = {
    "callbacks": lambda s: {"total": 10_000 * s},
    "timers": lambda s: {"count": 1_000 * s, "rounds": 1},
    "tasks": lambda s: {"count": 200 * s},
    "gather": lambda s: {"rounds": s},
}


def _factory(name: str):
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    import conveyor
    return conveyor.new_event_loop


def _child(loop_name: str, row: str, size: int) -> None:
    """Run one row (or the call_soon probe) and print how many operations it did."""
    sys.path.insert(0, ROOT)
    if row == "callsoon":
        loop = _factory(loop_name)()
        fut = loop.create_future()
        fut.set_result(None)
        add = fut.add_done_callback
        for _ in range(100 * size):
            for _ in range(100):
                add(id)
            loop.call_soon(loop.stop)  # run them, so the ready queue stays short
            loop.run_forever()
        loop.close()
        print("OPS", 10_000 * size)
        return
    from conveyor.bench import core
    with asyncio.Runner(loop_factory=_factory(loop_name)) as runner:
        done = runner.run(getattr(core, row)(**SIZES[row](size)))
    print("OPS", done[0] if isinstance(done, tuple) else done)


def _count(python: str, loop_name: str, row: str, size: int, toggle: str | None) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        if toggle:
            command.append(f"--toggle-collect={toggle}")
        command += [python, os.path.abspath(__file__), "--child", loop_name, row, str(size)]
        env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp,
                              check=True)
        ops = int(re.search(r"^OPS (\d+)", proc.stdout, re.M).group(1))
        with open(out) as f:
            total = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
    return ops, total


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", choices=[*SIZES, "callsoon"])
    parser.add_argument("loops", nargs="*", default=list(LOOPS))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--toggle", help="count only inside this C function")
    args = parser.parse_args()
    toggle = args.toggle
    if args.row == "callsoon":
        toggle = "_asyncio_Future_add_done_callback"
    for loop_name in args.loops:
        ops1, total1 = _count(args.python, loop_name, args.row, 1, toggle)
        ops2, total2 = _count(args.python, loop_name, args.row, 2, toggle)
        where = f" inside {toggle}" if toggle else ""
        print(f"{args.row:9} {loop_name:8} {(total2 - total1) / (ops2 - ops1):9.0f} "
              f"instructions/op{where}", flush=True)


if __name__ == "__main__":
    main()
