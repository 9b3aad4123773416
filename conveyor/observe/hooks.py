"""The instrument interface: what the loop tells observers, and the fan-out it calls.

The loop knows nothing about tracers, watchdogs or counters. It holds one attribute,
``loop._hooks``, which is ``None`` (the fast path: one ``is not None`` test per iteration)
or a `Hooks` object, and calls that object at fixed points of an iteration. `Hooks` turns
those calls into calls on every installed `Instrument` that defines the matching method,
the way trio's instrument list does:

- an instrument implements only the methods it cares about; the fan-out keeps one list of
  bound methods per hook, so an unimplemented hook costs nothing;
- an instrument whose method raises is removed from the loop and the error is logged: a bug
  in a diagnostic tool must never take the program down with it;
- the fan-out also works out what the loop itself does not: whether a callback steps a
  `Task` (the callback of a task step or wake-up is bound to the task), and when a task
  finishes (the step after which it is done), so instruments get ``task`` arguments and a
  ``task_done`` event without a done-callback being added to every task.

Instrument methods run on the loop's thread, inside the iteration: they must be quick.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from typing import Any, Callable, Iterable

from ..contract import LoopInternals
from ..core import on_new_loop

__all__ = ["Instrument", "Hooks", "add_instrument", "remove_instrument", "instruments",
           "task_of", "peek_exception", "open_loops", "HOOK_NAMES"]

logger = logging.getLogger("conveyor.observe")

#: Every hook an instrument may implement, in the order they happen in an iteration.
HOOK_NAMES = ("before_iteration", "before_poll", "after_poll", "before_callback",
              "after_callback", "after_iteration", "task_created", "task_done")

#: Names of the methods asyncio's Task schedules to step itself: the C Task's
#: TaskStepMethWrapper (no ``__name__``) and ``task_wakeup`` (3.11-3.13), and the pure-Python
#: Task's ``__step`` / ``__wakeup``.
_STEP_NAMES = frozenset({None, "task_wakeup", "__step", "__wakeup"})
_Task = asyncio.Task


class Instrument:
    """Base class for loop instruments; every method is optional.

    Subclassing is not required: any object with some of these methods can be installed.
    Times are ``loop.time()`` values (seconds, monotonic).
    """

    def before_iteration(self) -> None:
        """An iteration starts (just before its poll)."""

    def before_poll(self, timeout: float | None) -> None:
        """The loop is about to wait in the kernel for at most ``timeout`` s (None: forever)."""

    def after_poll(self, timeout: float | None, events: list[tuple[int, int]]) -> None:
        """The kernel returned; ``events`` is the poller's list of ready ``(fd, mask)``.

        The list belongs to the loop: read it, do not keep it.
        """

    def before_callback(self, handle: asyncio.Handle, task: asyncio.Task | None) -> None:
        """A ready callback is about to run; ``task`` is the Task it steps, if any."""

    def after_callback(self, handle: asyncio.Handle, task: asyncio.Task | None,
                       took: float) -> None:
        """A callback returned (or raised) after ``took`` seconds."""

    def after_iteration(self) -> None:
        """The iteration's callbacks have all run."""

    def task_created(self, task: asyncio.Task) -> None:
        """``loop.create_task`` made ``task`` (the creating task, if any, is current)."""

    def task_done(self, task: asyncio.Task) -> None:
        """``task`` finished: returned, raised or was cancelled (look at the task)."""


def peek_exception(task: asyncio.Future) -> BaseException | None:
    """A done, uncancelled task's exception, without marking it retrieved.

    ``task.exception()`` would tell asyncio someone looked, and silence its "Task exception
    was never retrieved" report: an observer must not change what the program logs. Both
    the C and the Python Future expose the stored exception as ``_exception`` (3.11 - 3.13).
    """
    return getattr(task, "_exception", None)


def task_of(handle: Any) -> asyncio.Task | None:
    """The Task a ready handle steps or wakes up, or None for any other callback."""
    callback = handle._callback
    owner = getattr(callback, "__self__", None)
    if owner is not None and isinstance(owner, asyncio.Task) and \
            getattr(callback, "__name__", None) in _STEP_NAMES:
        return owner
    return None


class Hooks:
    """The object the loop holds in ``_hooks`` while at least one instrument is installed.

    The loop calls ``before_poll``, ``after_poll``, ``before_callback``, ``after_callback``,
    ``after_iteration`` and ``task_created``; this object fans each call out to the
    instruments. It stays valid after its last instrument is removed (its lists are then
    empty), because the loop may be in the middle of an iteration when that happens.
    """

    def __init__(self, loop: LoopInternals) -> None:
        self._loop = loop
        self._instruments: list[Any] = []
        self._rebuild()

    # -------------------------------------------------------------- installation

    def add(self, instrument: Any) -> None:
        if instrument in self._instruments:
            return
        if not any(callable(getattr(instrument, name, None)) for name in HOOK_NAMES):
            raise TypeError(f"instrument {instrument!r} implements none of {HOOK_NAMES}")
        self._instruments.append(instrument)
        self._rebuild()

    def remove(self, instrument: Any) -> bool:
        try:
            self._instruments.remove(instrument)
        except ValueError:
            return False
        self._rebuild()
        return True

    @property
    def instruments(self) -> tuple[Any, ...]:
        return tuple(self._instruments)

    def _rebuild(self) -> None:
        """One list of bound methods per hook; the base class's no-ops are left out."""
        for name in HOOK_NAMES:
            methods = []
            for instrument in self._instruments:
                method = getattr(instrument, name, None)
                if method is None or not callable(method):
                    continue
                if getattr(method, "__func__", None) is getattr(Instrument, name):
                    continue
                methods.append(method)
            setattr(self, "_" + name, methods)
        self._wants_task = bool(self._before_callback or self._after_callback
                                or self._task_done)
        #: Read by the loop once per iteration: False lets it run callbacks on its fast
        #: path (no per-callback clock or hook calls) when instruments only watch
        #: iterations and polls.
        self.per_callback = self._wants_task

    def _failed(self, method: Any) -> None:
        instrument = method.__self__ if hasattr(method, "__self__") else method
        logger.exception("Instrument %r raised in %s; it is removed from %r",
                         instrument, getattr(method, "__name__", "?"), self._loop)
        remove_instrument(instrument, self._loop)

    def _call_all(self, methods: Iterable[Any], *args: Any) -> None:
        for method in methods:
            try:
                method(*args)
            except Exception:
                self._failed(method)

    # -------------------------------------------------------- called by the loop

    # Per-iteration hooks: the single-instrument case is called directly (no loop, no extra
    # call through _call_all), since one tracer or one watchdog is the usual setup.

    def before_poll(self, timeout: float | None) -> None:
        if self._before_iteration:
            self._call_all(self._before_iteration)
        methods = self._before_poll
        if len(methods) == 1:
            try:
                methods[0](timeout)
            except Exception:
                self._failed(methods[0])
        elif methods:
            self._call_all(methods, timeout)

    def after_poll(self, timeout: float | None, events: list) -> None:
        methods = self._after_poll
        if len(methods) == 1:
            try:
                methods[0](timeout, events)
            except Exception:
                self._failed(methods[0])
        elif methods:
            self._call_all(methods, timeout, events)

    def before_callback(self, handle: Any) -> None:
        if self._before_callback:
            self._call_all(self._before_callback, handle, task_of(handle))

    def after_callback(self, handle: Any, took: float) -> None:
        # The hottest hook: task_of inlined, and the common single-instrument case called
        # directly rather than through _call_all.
        if not self._wants_task:
            return
        callback = handle._callback
        task = getattr(callback, "__self__", None)
        if task is not None and not (isinstance(task, _Task) and
                                     getattr(callback, "__name__", None) in _STEP_NAMES):
            task = None
        methods = self._after_callback
        if len(methods) == 1:
            try:
                methods[0](handle, task, took)
            except Exception:
                self._failed(methods[0])
        elif methods:
            self._call_all(methods, handle, task, took)
        if task is not None and self._task_done and task.done():
            self._call_all(self._task_done, task)

    def after_iteration(self) -> None:
        methods = self._after_iteration
        if len(methods) == 1:
            try:
                methods[0]()
            except Exception:
                self._failed(methods[0])
        elif methods:
            self._call_all(methods)

    def task_created(self, task: asyncio.Task) -> None:
        if self._task_created:
            self._call_all(self._task_created, task)
        if task.done() and self._task_done:
            # An eager task (3.12+) can finish inside create_task, before any step is queued.
            self._call_all(self._task_done, task)


# ------------------------------------------------------------------ public functions

def _resolve(loop: Any) -> LoopInternals:
    if loop is None:
        loop = asyncio.get_running_loop()
    if not hasattr(loop, "_hooks"):
        raise TypeError(f"loop must be a conveyor EventLoop, got {loop!r}")
    return loop


def add_instrument(instrument: Any, loop: LoopInternals | None = None) -> None:
    """Install ``instrument`` on ``loop`` (default: the running loop)."""
    loop = _resolve(loop)
    hooks = loop._hooks
    if hooks is None:
        hooks = Hooks(loop)
        hooks.add(instrument)
        loop._hooks = hooks
    else:
        hooks.add(instrument)


def remove_instrument(instrument: Any, loop: LoopInternals | None = None) -> bool:
    """Uninstall ``instrument``; True if it was installed. The last one out restores the
    loop's fast path."""
    loop = _resolve(loop)
    hooks = loop._hooks
    if hooks is None or not hooks.remove(instrument):
        return False
    if not hooks.instruments:
        loop._hooks = None
    return True


def instruments(loop: LoopInternals | None = None) -> tuple[Any, ...]:
    """The instruments installed on ``loop``, in installation order."""
    loop = _resolve(loop)
    return () if loop._hooks is None else loop._hooks.instruments


#: Every conveyor loop created since conveyor.observe was imported (weakly held), so that
#: ``with conveyor.trace(...)`` can record loops that were made before the block began.
_loops: weakref.WeakSet = weakref.WeakSet()
on_new_loop(_loops.add)


def running_conveyor_loop() -> LoopInternals | None:
    """The running loop if it is a conveyor loop (instruments go on nothing else), else None."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return running if hasattr(running, "_hooks") else None


def on_loop_thread(loop: LoopInternals, func: Callable[[], Any]) -> bool:
    """Run ``func()`` on ``loop``'s thread, where instruments are installed and removed: now
    if the loop is not running or this is its thread, else through call_soon_threadsafe.
    False if the loop closed before it could be queued (``func`` then never runs)."""
    if loop.is_running() and loop._thread_id != threading.get_ident():
        try:
            loop.call_soon_threadsafe(func)
        except RuntimeError:  # closed meanwhile
            return False
        return True
    func()
    return True


def open_loops() -> list[LoopInternals]:
    """The conveyor loops of this process that are not closed."""
    return [loop for loop in list(_loops) if not loop.is_closed()]
