"""``python -m conveyor trace [-o out.html|out.json] app.py [args...]``: record a timeline.

The same as ``python -m conveyor run --trace OUT app.py``: the program runs as ``python
app.py`` would, on conveyor's loop, and when it ends the timeline of every conveyor loop it
ran is written to OUT: ``.html`` gives the self-contained page (open it in any browser,
offline), anything else the Chrome Trace Event JSON (Perfetto, chrome://tracing).
"""

from __future__ import annotations

import argparse

from .cli_run import _positive, add_program_arguments, parse, run_program
from .observe.trace import DEFAULT_SLOW


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor trace",
        description="Run a Python program on the conveyor loop and record a timeline.")
    parser.add_argument("-o", "--output", default="conveyor-trace.html", metavar="PATH",
                        help="where to write: .html page or .json trace "
                             "(default conveyor-trace.html)")
    parser.add_argument("--slow", type=_positive, metavar="SECONDS", default=DEFAULT_SLOW,
                        help=f"mark callbacks at least this long (default {DEFAULT_SLOW})")
    parser.add_argument("--watchdog", type=_positive, metavar="SECONDS",
                        help="also report stalls longer than SECONDS")
    parser.add_argument("--debug", action="store_true", help="asyncio debug mode")
    add_program_arguments(parser)
    return parser


def main(argv: list[str]) -> int:
    ns = parse(_parser(), argv)
    return run_program(ns, trace=ns.output, slow=ns.slow, watchdog=ns.watchdog,
                       debug=ns.debug, dump_signal=False)
