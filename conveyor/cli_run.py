"""``python -m conveyor run [options] app.py [args...]``: run a program on conveyor's loop.

The program runs as ``python app.py`` would run it (``__name__ == "__main__"``, ``sys.argv``
set to the script and its arguments, the script's directory first on ``sys.path``), with
``conveyor.install()`` in effect so its ``asyncio.run`` picks conveyor's loop. ``-m module``
runs a module instead, like ``python -m``.

The options switch on conveyor.observe for every conveyor loop the program creates:
``--watchdog S`` reports stalls longer than S seconds with the blocking stack; ``--trace
PATH`` writes a timeline when the program ends (``.html`` page or Chrome trace JSON);
``--debug`` turns on the loop's debug mode; ``--dump-tasks-on-signal`` prints the task
tree on SIGUSR1; ``--console`` opens the live console (``python -m conveyor top PID``).
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import sys
import traceback
from typing import Any, Callable

from .core import CoreLoop, on_new_loop
from .observe.console import console as open_console
from .observe.taskdump import dump_tasks_on_signal
from .observe.trace import DEFAULT_SLOW, Tracer
from .observe.watchdog import Watchdog
from .runner import install


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def add_program_arguments(parser: argparse.ArgumentParser) -> None:
    """The target: a script path, or -m module; then its own arguments, untouched."""
    parser.add_argument("-m", dest="module", metavar="MODULE",
                        help="run a library module as a script, like python -m")
    parser.add_argument("program", nargs=argparse.REMAINDER,
                        help="the script to run, then its arguments")


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse our options, and leave everything from the program on to the program.

    argparse alone would take an option-looking word after ``-m module`` (``-m mod -v``)
    as ours, so the command line is split first, as the python executable splits it: our
    options end at the first word that is not one of them (the script) or right after
    ``-m MODULE``.
    """
    takes_value = {opt for action in parser._actions if action.nargs != 0
                   for opt in action.option_strings}
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "-m":
            index += 2
            break
        if word == "--" or not word.startswith("-"):
            break
        name = word.split("=", 1)[0]
        index += 2 if name in takes_value and "=" not in word else 1
    ours, program = argv[:index], argv[index:]
    if program[:1] == ["--"]:
        program = program[1:]
    ns = parser.parse_args(ours)
    ns.program = program
    return ns


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor run",
        description="Run a Python program with asyncio on the conveyor loop.")
    parser.add_argument("--watchdog", type=_positive, metavar="SECONDS",
                        help="report every stall of the loop longer than SECONDS")
    parser.add_argument("--trace", metavar="PATH",
                        help="record a timeline; PATH.html for the page, else Chrome JSON")
    parser.add_argument("--slow", type=_positive, metavar="SECONDS", default=DEFAULT_SLOW,
                        help="with --trace: mark callbacks at least this long "
                             f"(default {DEFAULT_SLOW})")
    parser.add_argument("--debug", action="store_true", help="asyncio debug mode")
    parser.add_argument("--dump-tasks-on-signal", action="store_true",
                        help="print the task tree when the process gets SIGUSR1")
    parser.add_argument("--console", action="store_true",
                        help="listen for 'python -m conveyor top PID' (a socket only this "
                             "user can open; nothing is measured until top attaches)")
    add_program_arguments(parser)
    return parser


def has_program(ns: argparse.Namespace, command: str) -> bool:
    """True if ``ns`` names a script or module; else say so on stderr."""
    if ns.module is None and not ns.program:
        print(f"conveyor: no script given (python -m conveyor {command} [options] app.py ...)",
              file=sys.stderr)
        return False
    return True


def run_as_main(ns: argparse.Namespace) -> int:
    """Run the script or module ``ns`` names as ``python app.py`` would; its exit status.

    ``sys.argv`` and ``sys.path[0]`` are the program's while it runs and ours again after.
    An uncaught exception prints its traceback (status 1); ``SystemExit`` gives its code
    (a message is printed to stderr, status 1). The caller installs conveyor and whatever
    observes the run around this call.
    """
    program = list(ns.program)
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    status = 0
    try:
        if ns.module is not None:
            sys.argv = [ns.module, *program]
            runpy.run_module(ns.module, run_name="__main__", alter_sys=True)
        else:
            script = program[0]
            sys.argv = program
            if sys.path:
                sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code
        else:
            print(code, file=sys.stderr)
            status = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        status = 130
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
    return status


def run_program(ns: argparse.Namespace, *, trace: str | None, slow: float,
                watchdog: float | None, debug: bool, dump_signal: bool,
                console: bool = False) -> int:
    """Run the program ``ns`` names with the requested observers; returns an exit status."""
    if not has_program(ns, "run"):
        return 2
    install()
    observers: list[Callable[[CoreLoop], Any]] = []
    if debug:
        observers.append(lambda loop: loop.set_debug(True))
    dumps: list[Any] = []
    if dump_signal:
        def on_signal(loop: CoreLoop) -> None:
            for old in dumps:
                old.close()
            dumps[:] = [dump_tasks_on_signal(signal.SIGUSR1, loop)]
        observers.append(on_signal)
    stop_observing = [on_new_loop(observer) for observer in observers]
    if trace:
        trace = os.path.abspath(trace)  # the program may chdir before the file is written
    tracer = Tracer(trace, slow=slow).start() if trace else None
    dog = Watchdog(watchdog).start() if watchdog else None
    listening = open_console() if console else None
    try:
        status = run_as_main(ns)
    finally:
        for stop in stop_observing:
            stop()
        for dump in dumps:
            dump.close()
        if dog is not None:
            dog.stop()
        if listening is not None:
            listening.close()
        if tracer is not None:
            tracer.stop()
            print(f"conveyor: trace written to {trace}", file=sys.stderr)
    return status


def main(argv: list[str]) -> int:
    ns = parse(_parser(), argv)
    return run_program(ns, trace=ns.trace, slow=ns.slow, watchdog=ns.watchdog,
                       debug=ns.debug, dump_signal=ns.dump_tasks_on_signal,
                       console=ns.console)
