"""What ran, and where: the one place observe names a callback or a task step.

Statistics, the tracer, the OpenTelemetry export and the console all report slow callbacks
and task steps; a reader must see the same name and line in each of them. A task step is
named by the task's coroutine at the line it is suspended at now (its first line once it
has finished, since a finished coroutine has no frame); any other callback by its function
(through functools.partial and bound methods) at its first line. A stack caught running
(the tracer's sampler) is named by its innermost frame in the program's own code
(`running_site`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sysconfig
from typing import Any, NamedTuple

__all__ = ["Site", "callback_site", "coroutine_name", "coroutine_where", "function_of",
           "running_site"]


class Site(NamedTuple):
    """A callback's or a task step's name and source position ("" and 0 when unknown)."""

    name: str
    filename: str
    lineno: int

    def where(self) -> str:
        """"file:line", or "" when the position is unknown."""
        return f"{self.filename}:{self.lineno}" if self.filename else ""


def function_of(callback: Any) -> Any:
    """The plain function behind a callback: partials unwrapped, bound methods' functions."""
    while isinstance(callback, functools.partial):
        callback = callback.func
    return getattr(callback, "__func__", callback)


def coroutine_name(coro: Any) -> str:
    return getattr(coro, "__qualname__", None) or type(coro).__qualname__


def coroutine_where(coro: Any) -> Site:
    """Where a coroutine (or generator-based one) is suspended now, else its first line."""
    name = coroutine_name(coro)
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    if frame is not None:
        return Site(name, frame.f_code.co_filename, frame.f_lineno)
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is not None:
        return Site(name, code.co_filename, code.co_firstlineno)
    return Site(name, "", 0)


def callback_site(handle: Any, task: asyncio.Task | None) -> Site:
    """The site of what a handle ran: the task's step when it ran one, else its callback."""
    if task is not None:
        return coroutine_where(task.get_coro())
    func = function_of(handle._callback)
    name = getattr(func, "__qualname__", None) or repr(func)
    code = getattr(func, "__code__", None)
    if code is None:
        return Site(name, "", 0)
    return Site(name, code.co_filename, code.co_firstlineno)


_LIBRARY_DIRS = tuple(os.path.join(os.path.realpath(path), "") for path in
                      {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")})
_THIRD_PARTY_DIRS = tuple(os.path.join(os.path.realpath(path), "") for path in
                          {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
_CONVEYOR_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "")


def _is_program(filename: str) -> bool:
    """True for a file of the program or a third-party package; False for conveyor's own
    modules and the standard library's (site-packages sits inside it and counts as program)."""
    if filename.startswith(_CONVEYOR_DIR):
        return False
    return not filename.startswith(_LIBRARY_DIRS) or filename.startswith(_THIRD_PARTY_DIRS)


def running_site(frame: Any) -> Site:
    """Where a running stack is, seen from the program: its innermost frame outside the
    standard library and conveyor (the handler's ``time.sleep(...)`` line rather than a
    line inside ``json`` or the loop), else the innermost frame. ``frame`` is the innermost
    frame of a thread (``sys._current_frames()``)."""
    inner = frame
    while frame is not None:
        code = frame.f_code
        if _is_program(code.co_filename):
            return Site(code.co_qualname, code.co_filename, frame.f_lineno)
        frame = frame.f_back
    code = inner.f_code
    return Site(code.co_qualname, code.co_filename, inner.f_lineno)
