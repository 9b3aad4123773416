"""Entry points: making conveyor's loop the one a program runs on.

Three ways in, for three kinds of program:
- `conveyor.run(main())`: asyncio.run's semantics (Ctrl-C cancels the main task, async
  generators and the default executor are shut down), on a conveyor loop. It is asyncio's own
  `Runner` with conveyor's loop factory, so the two cannot drift apart.
- `asyncio.Runner(loop_factory=conveyor.new_event_loop)` and, on 3.12+,
  `asyncio.run(main(), loop_factory=conveyor.new_event_loop)`: no global state touched.
- `conveyor.install()`: for code that calls `asyncio.run` and can't be changed. It sets an
  event loop policy, the only global switch asyncio has. Python 3.14 deprecates policies
  (warning on use); install() keeps working there and silences that warning, since choosing
  the loop globally is exactly what the caller asked for. 3.16 removes policies: there
  `import conveyor` still works, and install() / EventLoopPolicy() raise RuntimeError
  naming the loop_factory ways, the only ones left.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Coroutine, TypeVar

from .loop import EventLoop

T = TypeVar("T")


def new_event_loop() -> EventLoop:
    """A new conveyor event loop (not set as the current loop)."""
    return EventLoop()


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run a coroutine to completion on a new conveyor loop, like asyncio.run."""
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("conveyor.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


#: Why install() and EventLoopPolicy cannot work on a Python without policies.
_NO_POLICIES = ("this Python has no asyncio event loop policies (3.16 removes them): use "
                "conveyor.run(main()), asyncio.run(main(), loop_factory=conveyor.new_event_loop) "
                "or asyncio.Runner(loop_factory=conveyor.new_event_loop)")


def _default_policy_class() -> type | None:
    """asyncio's default policy class, or None where policies are gone.

    Read with warnings silenced: 3.14 warns on the very attribute access, and a user who
    imports conveyor has not asked for a policy.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(asyncio, "DefaultEventLoopPolicy", None)


_PolicyBase = _default_policy_class()

if _PolicyBase is not None:
    class EventLoopPolicy(_PolicyBase):  # type: ignore[misc,valid-type]
        """asyncio's default policy, except that the loops it makes are conveyor's."""

        def new_event_loop(self) -> EventLoop:
            return EventLoop()
else:
    class EventLoopPolicy:  # type: ignore[no-redef]
        """Stands in where asyncio has no policies, so `import conveyor` still works and a
        program that asks for a policy is told what to use instead."""

        def __init__(self) -> None:
            raise RuntimeError(_NO_POLICIES)


def install() -> None:
    """Make asyncio.run, asyncio.new_event_loop and friends use conveyor from now on.

    Works while asyncio has policies (through 3.15); where they are gone it raises
    RuntimeError naming the loop_factory ways, which need no global switch.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        set_policy = getattr(asyncio, "set_event_loop_policy", None)
        if set_policy is None or _PolicyBase is None:
            raise RuntimeError(_NO_POLICIES)
        set_policy(EventLoopPolicy())
