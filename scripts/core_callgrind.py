"""Instructions per operation of a core bench row, counted by callgrind (deterministic).

    python scripts/core_callgrind.py ROW [LOOP ...] [--python PY] [--toggle FUNCTION]
    python scripts/core_callgrind.py callsoon [LOOP ...]   # loop.call_soon called from C

ROW is one of conveyor/bench/core.py's workloads (callbacks, timers, tasks, gather); LOOP is
asyncio, uvloop or conveyor (default: all three), or one of two floors for the tasks and
gather rows: ``bare-handles``, the least Python loop that still makes the Handle asyncio's
``call_soon`` must return, and ``bare``, the same queueing tuples (see ``BareLoop``). Each row runs twice under
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
import contextvars
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


class BareLoop(asyncio.AbstractEventLoop):
    """The least Python loop that runs C Tasks, for the floor of the tasks and gather rows.

    No poller, timers or hooks: ``call_soon`` queues the call, and the dispatch runs the
    queue in batches. As "bare" its ``call_soon`` queues a tuple and returns None, which no
    conforming loop may; as "bare-handles" (`_factory`) it is conveyor's own ``call_soon``,
    which makes the Handle asyncio's API requires. On 3.11 it is bound in the instance dict,
    as conveyor binds it (3.11's C Task looks it up as an attribute on every step).
    """

    _handles = False

    def __init__(self) -> None:
        from collections import deque
        self._ready = deque()
        self._closed = self._debug = self._stop = False
        if sys.version_info < (3, 12):
            self.call_soon = self.call_soon

    def call_soon(self, /, callback, *args, context=None):
        self._ready.append((callback, args,
                            contextvars.copy_context() if context is None else context))

    def get_debug(self):
        return False

    def set_debug(self, enabled):
        pass

    def is_closed(self):
        return self._closed

    def call_exception_handler(self, context):
        print("unexpected:", context, file=sys.stderr)

    def close(self):
        self._closed = True

    def create_future(self):
        return asyncio.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None):
        return asyncio.Task(coro, loop=self, name=name, context=context)

    async def shutdown_asyncgens(self):
        pass

    async def shutdown_default_executor(self, timeout=None):
        pass

    def _stopper(self, fut):
        self._stop = True

    def run_until_complete(self, coro):
        from itertools import repeat
        asyncio._set_running_loop(self)
        try:
            fut = asyncio.ensure_future(coro, loop=self)
            fut.add_done_callback(self._stopper)
            self._stop = False
            ready = self._ready
            popleft = ready.popleft
            while not self._stop:
                if self._handles:
                    for _ in repeat(None, len(ready)):
                        handle = popleft()
                        if handle._cancelled:
                            continue
                        if not handle._args:
                            handle._context.run(handle._callback)
                        else:
                            handle._context.run(handle._callback, *handle._args)
                else:
                    for _ in repeat(None, len(ready)):
                        callback, args, context = popleft()
                        if not args:
                            context.run(callback)
                        else:
                            context.run(callback, *args)
            return fut.result()
        finally:
            asyncio._set_running_loop(None)


def _factory(name: str):
    if name == "bare":
        return BareLoop
    if name == "bare-handles":
        from conveyor.core import CoreLoop

        class HandlesLoop(BareLoop):
            _handles = True
            call_soon = CoreLoop.call_soon

        return HandlesLoop
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
