"""The instrument that records one loop for a `Tracer` (trace.py).

Recording has to be cheap: each hook appends one flat tuple to the tracer's ring buffer
(``collections.deque(maxlen=...)``), laid out as its class in trace_events.py says (each
append below names that class), and stores keys, not text: code objects, task serial
numbers. A callback's start is derived from the duration the loop already measured, so the
recorder needs no ``before_callback`` hook at all.

The line a slow step blocked on cannot be read after the step: by then its frame has moved
on to the next await, or is gone (an aiohttp handler returns within the step that blocked).
`Sampler`, a thread, looks at each traced loop's running frame every ``slow`` seconds
and leaves its two latest sightings on the recorder; a slow step that a sighting falls inside
takes it as `Step.blocked_at`. Fast events pay nothing for it; the loop pays one switch of
the GIL per sample (at most 100 a second: on a loop busy with nothing but tiny callbacks,
about 3 % of its rate in ``python -m conveyor.bench.observe --only callbacks``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from .hooks import Instrument, peek_exception
from .sites import Site, coroutine_name, coroutine_where, function_of, running_site
from .trace_events import (CALLBACK, ITERATION, POLL, STEP, TASK_CREATED, TASK_DONE,
                           TASK_NAMED, TIMER)

if TYPE_CHECKING:
    from .trace import Tracer

__all__ = ["Recorder", "Sampler", "site_key"]

_clock = time.monotonic
_TimerHandle = asyncio.TimerHandle


def site_key(callback: Any) -> Any:
    """A cheap, long-lived key naming a callback's code: its code object, or a string."""
    func = function_of(callback)
    code = getattr(func, "__code__", None)
    if code is not None:
        return code
    return getattr(func, "__qualname__", None) or type(func).__qualname__


def _outcome(task: asyncio.Task) -> str:
    if task.cancelled():
        return "cancelled"
    exc = peek_exception(task)
    return "returned" if exc is None else f"raised {type(exc).__name__}: {exc}"


class Recorder(Instrument):
    """Records one loop into the tracer's shared ring buffer."""

    def __init__(self, tracer: Tracer, loop_number: int, loop: Any = None) -> None:
        self._tracer = tracer
        self.loop = loop
        #: The `Sampler`'s two latest sightings, older first: (from, until, site) or None.
        #: Two, because the latest one inside a step may come after the line that blocked
        #: (the step went on to write its response): the earliest inside the step wins.
        self.sightings: tuple[Any, Any] = (None, None)
        self._loop_number = loop_number
        self._append = tracer._events.append
        self._slow = tracer.slow
        #: id(task) -> (lane serial, weak reference to the task)
        self._serials: dict[int, tuple[int, weakref.ref]] = {}
        self._poll_start = 0.0
        self._nevents = 0

    def _remember(self, task: asyncio.Task, serial: int) -> None:
        """Map the live task to its lane; the entry goes when the task is collected, so the
        map stays as small as the set of live tasks even if some never finish."""
        key = id(task)
        serials = self._serials

        def forget(ref: weakref.ref, key: int = key) -> None:
            found = serials.get(key)
            if found is not None and found[1] is ref:
                del serials[key]

        serials[key] = (serial, weakref.ref(task, forget))

    def _serial(self, task: asyncio.Task, now: float) -> int:
        found = self._serials.get(id(task))
        if found is None:
            # A task that existed before tracing began: give it a lane now.
            serial = self._tracer._new_serial()
            self._remember(task, serial)
            self._append((TASK_CREATED, self._loop_number, now, serial, task.get_name(),
                          coroutine_name(task.get_coro()), None, True))  # TaskCreated
            return serial
        return found[0]

    def finish(self) -> None:
        """Recording ends: note the names of tasks still alive (they may have been renamed
        since creation: asyncio.create_task(name=...) names a task after creating it)."""
        now = _clock()
        for serial, ref in list(self._serials.values()):
            task = ref()
            if task is not None:
                self._append((TASK_NAMED, self._loop_number, now, serial,
                              task.get_name()))  # TaskNamed
        self._serials.clear()

    def before_poll(self, timeout: float | None) -> None:
        # An iteration's phase 1 (computing the timeout) takes well under a microsecond, so
        # the poll's start stands for the iteration's start: one hook call fewer.
        self._poll_start = _clock()

    def after_poll(self, timeout: float | None, events: list) -> None:
        now = _clock()
        self._nevents = len(events)
        if self._poll_start:  # 0.0 if attached (from another thread) during this poll
            self._append((POLL, self._loop_number, self._poll_start, now, timeout,
                          tuple(events) if events else None))  # Poll

    def after_callback(self, handle: Any, task: asyncio.Task | None, took: float) -> None:
        end = _clock()
        if task is not None:
            found = self._serials.get(id(task))
            serial = found[0] if found is not None else self._serial(task, end)
            if took < self._slow:
                self._append((STEP, self._loop_number, end - took, took, serial, None,
                              None))  # Step
            else:
                self._append((STEP, self._loop_number, end - took, took, serial,
                              self._seen_between(end - took, end),
                              coroutine_where(task.get_coro())))  # Step
            return
        callback = handle._callback
        code = getattr(getattr(callback, "__func__", callback), "__code__", None)
        key = code if code is not None else site_key(callback)
        if isinstance(handle, _TimerHandle):
            start = end - took
            self._append((TIMER, self._loop_number, start, took, key,
                          start - handle._when))  # Timer
        else:
            self._append((CALLBACK, self._loop_number, end - took, took, key))  # Callback

    def _seen_between(self, start: float, end: float) -> Site | None:
        """The earliest of the sampler's sightings taken inside [start, end], if any."""
        for sighting in self.sightings:
            if sighting is not None and start <= sighting[0] and sighting[1] <= end:
                return sighting[2]
        return None

    def after_iteration(self) -> None:
        if self._poll_start:
            self._append((ITERATION, self._loop_number, self._poll_start, _clock(),
                          self._nevents))  # Iteration

    def task_created(self, task: asyncio.Task) -> None:
        now = _clock()
        serial = self._tracer._new_serial()
        self._remember(task, serial)
        parent = None
        try:
            current = asyncio.current_task()
        except RuntimeError:
            current = None
        if current is not None:
            parent = self._serial(current, now)
        self._append((TASK_CREATED, self._loop_number, now, serial, task.get_name(),
                      coroutine_name(task.get_coro()), parent, False))  # TaskCreated

    def task_done(self, task: asyncio.Task) -> None:
        now = _clock()
        found = self._serials.pop(id(task), None)
        serial = self._tracer._new_serial() if found is None else found[0]
        self._append((TASK_DONE, self._loop_number, now, serial, _outcome(task),
                      task.get_name()))  # TaskDone


class Sampler:
    """A thread that notes, every ``interval`` seconds, the line each traced loop is running
    (`sites.running_site`), for slow steps to name the line they blocked on."""

    def __init__(self, recorders: dict[Any, Recorder], interval: float) -> None:
        self._recorders = recorders
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-trace-sampler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for recorder in list(self._recorders.values()):
                thread_id = getattr(recorder.loop, "_thread_id", None)
                if thread_id is None:
                    continue
                before = _clock()
                frame = sys._current_frames().get(thread_id)
                if frame is not None:
                    site = running_site(frame)
                    # The loop thread may run between these clock readings (the GIL can
                    # switch): the sighting is true anywhere inside [before, after].
                    recorder.sightings = (recorder.sightings[1], (before, _clock(), site))
                del frame
