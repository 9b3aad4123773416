"""Callback handles: what call_soon, call_later and add_reader return and queue.

They subclass asyncio's public `Handle` and `TimerHandle`, so `isinstance` checks, `cancel()`,
`cancelled()`, `when()` and the familiar reprs behave exactly as on the standard loop. Only the
constructors are replaced: asyncio's asks the loop for its debug flag on every handle; here the
loop records the creation stack itself, and only in debug mode, so the common path is a few
attribute stores. `cancel()` is likewise replaced by one that reads the loop's flag directly
instead of calling `get_debug()`: same effect, one Python call fewer on every cancelled timeout.

`call_soon` and `call_later` go further and make the stores themselves, on instances of
`BareHandle` / `BareTimerHandle`: subclasses whose constructor is `object.__init__`, so that
creating one is a single C call with no Python frame (cheaper than `Handle.__new__(Handle)`,
which goes through `object.__new__`'s argument checks). They carry the same names as their
bases, so reprs and logs read exactly as for handles made anywhere else.
"""

from __future__ import annotations

import asyncio
from contextvars import copy_context


class Handle(asyncio.Handle):
    __slots__ = ()

    def __init__(self, callback, args, loop, context=None) -> None:
        self._context = copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if self._loop._debug:
                self._repr = repr(self)  # keep the callback's name for "took N seconds" logs
            self._callback = None
            self._args = None


class TimerHandle(asyncio.TimerHandle):
    __slots__ = ()

    def __init__(self, when, callback, args, loop, context=None) -> None:
        self._context = copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        self._source_traceback = None
        self._when = when
        self._scheduled = False

    def cancel(self) -> None:
        if not self._cancelled:
            loop = self._loop
            # Marked first: note_cancelled() may compact the heap right now, and must see
            # this entry as dead, or it keeps it as live and the dead count drifts.
            self._cancelled = True
            if self._scheduled:
                loop._timers.note_cancelled()
            if loop._debug:
                self._repr = repr(self)
            self._callback = None
            self._args = None


class BareHandle(Handle):
    """A Handle that `BareHandle()` leaves empty, for the loop to fill (`call_soon`)."""

    __slots__ = ()
    __init__ = object.__init__


class BareTimerHandle(TimerHandle):
    """A TimerHandle that `BareTimerHandle()` leaves empty, for the loop to fill
    (`call_later`)."""

    __slots__ = ()
    __init__ = object.__init__


# Named as their bases: asyncio's reprs and conveyor's logs print the class name.
BareHandle.__name__ = BareHandle.__qualname__ = "Handle"
BareTimerHandle.__name__ = BareTimerHandle.__qualname__ = "TimerHandle"
