"""``python -m conveyor explain [-o page.html] prog.py [args...]``: replay a run step by step.

The program runs as ``python prog.py`` would, on conveyor's loop, with the step recorder on
every loop it creates and its printed output captured (and still printed). When it ends the
replay page is written. A program that takes more than ``--limit`` steps is stopped, and
no page is written: ``trace`` is the tool for long runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from ..cli_run import add_program_arguments, has_program, parse, run_as_main
from ..runner import install
from .page import write_page
from .recorder import STEP_LIMIT, Recording

__all__ = ["main", "explain"]

DEFAULT_OUTPUT = "conveyor-explain.html"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor explain",
        description="Run a short Python program on the conveyor loop and write a page that "
                    "replays it step by step: call stack, ready queue, timers, kernel wait, "
                    "tasks, output.")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="PAGE",
                        help=f"where to write the page (default {DEFAULT_OUTPUT})")
    parser.add_argument("--limit", type=int, default=STEP_LIMIT, metavar="STEPS",
                        help=f"refuse programs with more steps (default {STEP_LIMIT})")
    add_program_arguments(parser)
    return parser


def explain(ns: argparse.Namespace, output: str, limit: int = STEP_LIMIT) -> int:
    """Run the program ``ns`` names under the recorder and write the page; exit status."""
    if not has_program(ns, "explain"):
        return 2
    output = os.path.abspath(output)  # the program may chdir
    command = shlex.join(["-m", ns.module, *ns.program] if ns.module else ns.program)
    install()
    recording = Recording(limit).start()
    try:
        status = run_as_main(ns)
    finally:
        recording.stop()
    if recording.refused:
        return status or 1
    if not recording.steps:
        print("conveyor explain: the program ran no conveyor loop; nothing to explain",
              file=sys.stderr)
        return status or 1
    write_page(output, {"command": command, **recording.to_json()})
    print(f"conveyor: {len(recording.steps)} steps explained in {output}", file=sys.stderr)
    return status


def main(argv: list[str]) -> int:
    ns = parse(_parser(), argv)
    return explain(ns, ns.output, ns.limit)
