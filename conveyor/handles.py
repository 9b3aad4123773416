"""Callback handles: what call_soon, call_later and add_reader return and queue.

They subclass asyncio's public `Handle` and `TimerHandle`, so `isinstance` checks, `cancel()`,
`cancelled()`, `when()` and the familiar reprs behave exactly as on the standard loop. Only the
constructors are replaced: asyncio's asks the loop for its debug flag on every handle; here the
loop records the creation stack itself, and only in debug mode, so the common path is a few
attribute stores.
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
