"""``python -m conveyor <command> ...``: pick the command's module and hand it the rest.

This file only dispatches. Each command lives in its own module with a
``main(argv: list[str]) -> int`` that parses its own options, and is imported only when
asked for, so ``python -m conveyor bench`` does not pay for the tracer and a command that
is not written yet does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("conveyor.cli_run", "run a script or module under the conveyor loop"),
    "trace": ("conveyor.cli_trace", "run a program and record a timeline of the loop"),
    "explain": ("conveyor.explain.cli", "replay a short program step by step in a page"),
    "top": ("conveyor.cli_top", "watch a running program's loop live (its console)"),
    "bench": ("conveyor.bench", "benchmark conveyor against asyncio and uvloop"),
    "demo": ("conveyor.demo", "show the loop at work"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor",
        description="conveyor: a pure-Python asyncio event loop.",
        epilog="Run 'python -m conveyor <command> --help' for a command's options.")
    parser.add_argument("command", choices=COMMANDS, metavar="command",
                        help="; ".join(f"{name}: {text}" for name, (_, text) in COMMANDS.items()))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the first word is ours: everything after it, options included, is the command's.
    ns = _parser().parse_args(argv[:1])
    module_name, _ = COMMANDS[ns.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"conveyor: the '{ns.command}' command is not available yet "
              f"({module_name} does not exist)", file=sys.stderr)
        return 2
    status = module.main(argv[1:])
    return 0 if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
