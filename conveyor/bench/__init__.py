"""conveyor's benchmark suite, behind ``python -m conveyor bench``.

Usage::

    python -m conveyor bench                      # every suite, all loops, 3 runs each
    python -m conveyor bench net --repeat 5       # one suite
    python -m conveyor bench core.timers          # one workload
    python -m conveyor bench net --python /path/to/python3.13   # servers under 3.13
    python -m conveyor bench --loops asyncio,conveyor --json out.json
    python -m conveyor bench --quick              # small sizes, 1 run: a smoke test
    python -m conveyor bench --list

Every (workload, loop, repetition) runs in a fresh interpreter (``conveyor.bench.child``),
so loops share no imports, caches or heap; ``--python`` picks that interpreter (it imports
the conveyor that launched it). The table shows the median rate per loop, a ± figure (half
the min-max range over the runs, as a share of the median), the server's CPU per operation
where the workload measures it, and the ratios conveyor/asyncio and conveyor/uvloop.
Loops that are not installed or not written yet are skipped with a note. Progress goes to
stderr; the table alone goes to stdout.

The echo servers (``net``, ``tls``) are loaded by a C client built on first use
(``loadgen.c``, see :mod:`conveyor.bench.loadgen`; the Python client stands in, with a
warning, where no C compiler is found), pinned to one core with the server on another;
the C echo server under the same load is the ``ceiling`` column.

Adding a suite
--------------
Write one module in this package, e.g. ``conveyor/bench/net.py``, that defines
``WORKLOADS``, a list of :class:`Workload`. Nothing else needs to change: the module name
is the suite name on the command line (``bench net``, ``bench net.echo``), and
``bench`` with no arguments finds it. ::

    from conveyor.bench import Workload

    async def echo(connections: int = 50, messages: int = 20_000) -> int:
        '''1 KiB echo over loopback TCP.'''   # first line shows in --list
        ...                                   # runs inside the loop under test
        return connections * messages         # operations done; the harness times the call

    WORKLOADS = [
        Workload("echo", echo, quick={"messages": 500}, unit="messages/s"),
    ]

The rules a workload follows:

- ``async def f(**params)`` runs inside the loop being measured (started with
  ``asyncio.Runner(loop_factory=...)``). A plain ``def f(loop, **params)`` gets the fresh
  loop and drives it itself (``loop.run_until_complete``...); the harness closes it after.
- It returns the number of operations done. If it has setup that should not be timed
  (starting a server, drawing random numbers), it times the interesting part itself with
  ``time.perf_counter()`` and returns ``(operations, seconds)``; a server loaded from
  another process returns :class:`Measured`, which also carries the server's CPU time
  (``conveyor.bench.loadgen.load_server`` does all of that for an echo server).
- A server loaded from another process sets ``served=True`` so the harness pins it; a
  plain TCP echo server also sets ``ceiling=True`` to get the C echo server beside it.
- ``params`` are the default keyword arguments; ``quick`` overrides some of them for
  ``--quick`` so the test suite can smoke-test every workload in well under a second.
- Size it to take 0.3-2 s under stock asyncio; seed any randomness so every loop gets the
  same work; use only public asyncio API so it runs on every loop.
- ``unit`` names what one operation is ("ops/s", "messages/s", ...).
"""

from __future__ import annotations

from .registry import Measured, Workload

__all__ = ["Workload", "Measured", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m conveyor bench`` with ``argv`` (the arguments after ``bench``)."""
    from .cli import main as cli_main
    return cli_main(argv)
