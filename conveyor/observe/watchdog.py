"""The watchdog: notice, while it is happening, that something is blocking the loop.

    with conveyor.watchdog(threshold=0.1):     # inside a coroutine, or around conveyor.run
        ...
    python -m conveyor run --watchdog 0.1 app.py

A blocked loop cannot report on itself, so the watching is done by a separate thread (curio's
monitor is the model). The loop only keeps a heartbeat, through two instrument hooks:
``after_poll`` notes "the loop left the kernel at time t and is running code";
``before_poll`` notes "it is back, waiting in the kernel" (waiting there is not a stall). The
thread wakes a few times per threshold; when the loop has been running code for longer than
the threshold it takes the loop thread's stack from ``sys._current_frames()`` at that moment,
and logs it once per stall, with the task whose step is running. When the loop comes back
to poll, the hook logs how long the stall lasted.

Reports go to the ``conveyor.watchdog`` logger (WARNING) and are kept in ``stalls``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Callable

from ..contract import LoopInternals
from ..core import LOOP_CODES, on_new_loop
from .hooks import Instrument, add_instrument, remove_instrument, running_conveyor_loop

__all__ = ["Watchdog", "Stall", "watchdog", "Heartbeat", "capture_stall"]

logger = logging.getLogger("conveyor.watchdog")
#: How many stall records a watchdog keeps (every stall is logged regardless).
MAX_STALLS_KEPT = 1000
_clock = time.monotonic


@dataclass
class Stall:
    """One period during which the loop did not come back to poll in time.

    The task and the loop are held weakly: a record of a stall must not keep a finished
    task (and its result or exception) alive.
    """

    started: float                     #: when the loop left the kernel (monotonic seconds)
    stack: list[traceback.FrameSummary]  #: the loop thread's stack when noticed, oldest first
    task_repr: str | None              #: repr of the task whose step was running, if any
    callback: str                      #: the running callback's description
    duration: float | None = None      #: set when the loop came back to poll
    noticed_after: float = 0.0         #: how long it had lasted when the thread noticed
    _task: Any = field(default=None, repr=False, compare=False)
    _loop: Any = field(default=None, repr=False, compare=False)

    @property
    def task(self) -> asyncio.Task | None:
        """The task whose step was blocking, while it is still alive."""
        return self._task() if self._task is not None else None

    @property
    def loop(self) -> LoopInternals | None:
        return self._loop() if self._loop is not None else None

    def format(self) -> str:
        head = (f"event loop blocked for {self.noticed_after:.3f} s (still blocked) "
                f"in {self.callback}")
        if self.task_repr is not None:
            head += f"\n  task: {self.task_repr}"
        return head + "\n  stack (most recent call last):\n" + "".join(
            "  " + line for line in traceback.format_list(self.stack))


class Heartbeat(Instrument):
    """The loop-side half: two timestamps per iteration, nothing per callback.

    Also used on its own (no watchdog thread) by the live console, which reads it with
    `capture_stall` when a client asks.
    """

    def __init__(self, watchdog: "Watchdog | None", loop: LoopInternals) -> None:
        self._watchdog = watchdog
        self.loop = loop
        self.thread_id: int | None = None
        #: When the loop left poll; None while it waits in the kernel.
        self.busy_since: float | None = None
        self.reported: Stall | None = None

    def before_poll(self, timeout: float | None) -> None:
        self.busy_since = None
        if self.reported is not None:
            self._resumed()

    def after_poll(self, timeout: float | None, events: list) -> None:
        if self.reported is not None:
            # The thread reported just as the loop came back: close that stall now.
            self._resumed()
        self.thread_id = threading.get_ident()
        self.busy_since = _clock()

    def _resumed(self) -> None:
        stall, self.reported = self.reported, None
        if stall is not None and stall.duration is None:
            stall.duration = _clock() - stall.started
            logger.warning("event loop resumed after being blocked for %.3f s",
                           stall.duration)


class Watchdog:
    """A thread that reports stalls of conveyor loops longer than ``threshold`` seconds."""

    def __init__(self, threshold: float = 0.1, *, interval: float | None = None) -> None:
        if not isinstance(threshold, (int, float)) or threshold <= 0:
            raise ValueError(f"threshold must be a positive number of seconds, got "
                             f"{threshold!r}")
        self.threshold = float(threshold)
        self.interval = interval if interval is not None else min(self.threshold / 4, 0.05)
        if self.interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        #: The most recent stalls (at most `MAX_STALLS_KEPT`), oldest first.
        self.stalls: deque[Stall] = deque(maxlen=MAX_STALLS_KEPT)
        self._beats: dict[LoopInternals, Heartbeat] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Stops watching new loops; set while started.
        self._unwatch: Callable[[], None] | None = None

    # ------------------------------------------------------------ attaching

    def attach(self, loop: LoopInternals) -> None:
        """Watch ``loop`` (a conveyor EventLoop) from now on."""
        with self._lock:
            if loop in self._beats:
                return
            beat = self._beats[loop] = Heartbeat(self, loop)
        add_instrument(beat, loop)

    def detach(self, loop: LoopInternals) -> None:
        with self._lock:
            beat = self._beats.pop(loop, None)
        if beat is not None:
            remove_instrument(beat, loop)

    def start(self) -> "Watchdog":
        """Watch the running loop, if any, and every conveyor loop created from now on."""
        if self._unwatch is None:
            self._unwatch = on_new_loop(self.attach)
        running = running_conveyor_loop()
        if running is not None:
            self.attach(running)
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="conveyor-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        for loop in list(self._beats):
            self.detach(loop)
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def __enter__(self) -> "Watchdog":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # ------------------------------------------------------------ the thread

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                beats = list(self._beats.values())
            for beat in beats:
                try:
                    self._check(beat)
                except Exception:  # the watchdog must outlive anything it looks at
                    logger.exception("watchdog failed to inspect %r", beat.loop)

    def _check(self, beat: Heartbeat) -> None:
        if beat.reported is not None:
            return
        stall = capture_stall(beat, self.threshold)
        if stall is None:
            return
        beat.reported = stall
        self.stalls.append(stall)
        logger.warning("%s", stall.format())


def capture_stall(beat: Heartbeat, threshold: float) -> Stall | None:
    """The stall ``beat``'s loop is in now, if it has run code for ``threshold`` s or more.

    Called from any thread but the loop's: it reads the heartbeat, takes the loop thread's
    stack and the current task at this moment, and changes nothing (the watchdog logs and
    records what it returns; the live console only shows it).
    """
    since = beat.busy_since
    if since is None:
        return None
    lasted = _clock() - since
    if lasted < threshold:
        return None
    frame = sys._current_frames().get(beat.thread_id)
    if beat.busy_since != since:
        return None  # the loop came back while we looked
    stack = traceback.extract_stack(frame) if frame is not None else \
        traceback.StackSummary()
    task = _current_task(beat.loop)
    return Stall(started=since, stack=list(stack),
                 task_repr=None if task is None else _safe_repr(task),
                 callback=_describe(task, frame), noticed_after=lasted,
                 _task=None if task is None else weakref.ref(task),
                 _loop=weakref.ref(beat.loop))


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception:  # a repr racing the loop's thread must not kill the watchdog
        return object.__repr__(obj)


def _current_task(loop: LoopInternals) -> asyncio.Task | None:
    """The task the loop is stepping now, read from the watchdog's thread.

    asyncio keeps the current task per loop in a dict (3.11 - 3.13), so this works from any
    thread; the loop's own bookkeeping (its current handle) is only kept on the slow path,
    which a watchdog alone does not switch on.
    """
    try:
        return asyncio.current_task(loop)
    except Exception:
        return None


def _describe(task: asyncio.Task | None, frame: FrameType | None) -> str:
    """What was running: the task's step, or the callback the loop called (the frame
    the innermost of the loop's own frames called, walking out from ``frame``)."""
    if task is not None:
        coro = task.get_coro()
        return f"a step of {task.get_name()} ({getattr(coro, '__qualname__', coro)})"
    called = None
    while frame is not None:
        if frame.f_code in LOOP_CODES:
            if called is None:
                return "the loop itself"
            code = called.f_code
            return f"callback {code.co_name} ({code.co_filename}:{called.f_lineno})"
        called, frame = frame, frame.f_back
    return "code outside the loop's callbacks"


def watchdog(threshold: float = 0.1, *, interval: float | None = None) -> Watchdog:
    """A started `Watchdog`: reports every stall of conveyor loops longer than ``threshold``.

    Use it as a context manager (``with conveyor.watchdog(0.1): ...``), or keep the object
    and call ``stop()``. It watches the running loop and any conveyor loop created while it
    is active.
    """
    return Watchdog(threshold, interval=interval).start()
