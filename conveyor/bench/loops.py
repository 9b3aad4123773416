"""The event loops a benchmark can run under, by name.

Each name maps to a zero-argument loop factory. Factories import their loop lazily, so a
child process that measures asyncio never imports uvloop or conveyor's loop, and the parent
can ask whether a loop is available without building one.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import platform
import sys
from typing import Any, Callable

__all__ = ["LOOP_NAMES", "factory", "unavailable_reason", "describe"]

#: Known loops, in the order the table shows them.
LOOP_NAMES: tuple[str, ...] = ("asyncio", "uvloop", "conveyor")


def factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The ``loop_factory`` for ``name``; raises ``ImportError`` if it cannot be had."""
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        return importlib.import_module("uvloop").new_event_loop
    if name == "conveyor":
        make = getattr(importlib.import_module("conveyor"), "new_event_loop", None)
        if make is None:
            raise ImportError("conveyor.new_event_loop does not exist yet")
        return make
    raise ValueError(f"unknown loop {name!r}; known: {', '.join(LOOP_NAMES)}")


def unavailable_reason(name: str) -> str | None:
    """Why ``name`` cannot be benchmarked here, or ``None`` if it can.

    uvloop is checked without importing it; conveyor is imported, since the parent process
    is running conveyor's own package anyway.
    """
    if name == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            return "uvloop is not installed (pip install 'conveyor[bench]')"
        return None
    try:
        factory(name)
    except ImportError as exc:
        return str(exc)
    except Exception as exc:  # a half-written loop module must not stop the other loops
        return f"{name} failed to import: {exc!r}"
    return None


def describe() -> dict[str, Any]:
    """This interpreter, its conveyor, and why each loop cannot run here (None: it can).

    ``python -m conveyor.bench.loops`` prints it as JSON: the bench asks the interpreter
    named by ``--python`` this way before running anything under it.
    """
    conveyor = importlib.import_module("conveyor")
    return {
        "version": platform.python_version(),
        "sys_version": sys.version,
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "conveyor": conveyor.__file__,
        "loops": {name: unavailable_reason(name) for name in LOOP_NAMES},
    }


if __name__ == "__main__":
    print(json.dumps(describe()))
