"""The tracer: record what the loop does and write it as Chrome trace JSON or an HTML page.

    with conveyor.trace("out.html"):        # or "out.json"
        conveyor.run(main())

    @conveyor.trace("out.json")             # around a coroutine function or a function
    async def main(): ...

What is recorded, per loop: each iteration; each kernel wait (poll) with its timeout and the
fds it reported ready; each callback with its source, and, when the callback steps a Task,
that task and its coroutine; timers and how late they fired; each task's creation (with the
task that created it), its steps, and how it ended (returned, raised, cancelled).

This module is the front: `Tracer` decides which loops are recorded and when the file is
written. The rest is split by what changes together:

- trace_events.py: the event schema, one NamedTuple per kind of event;
- trace_recorder.py: the instrument that records one loop, one flat tuple per event, into
  the tracer's ring buffer (``collections.deque(maxlen=...)``): memory stays bounded, and a
  long run keeps its most recent events and says how many it lost;
- trace_writers.py: the events as Chrome trace JSON (Perfetto, chrome://tracing) or as the
  self-contained HTML page (timeline.html), made only when the file is written.
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections import deque
from typing import Any, Callable

from ..contract import LoopInternals
from ..core import on_new_loop
from .hooks import add_instrument, open_loops, remove_instrument, running_conveyor_loop
from .trace_events import DEFAULT_SLOW
from .trace_recorder import Recorder, Sampler
from .trace_writers import (LOOP_TID, POLL_TID, TASK_TID_BASE, render_html, to_chrome,
                            write_file)

__all__ = ["Tracer", "trace", "to_chrome", "render_html", "LOOP_TID", "POLL_TID",
           "TASK_TID_BASE", "DEFAULT_SLOW", "DEFAULT_MAX_EVENTS"]

#: The sampler (trace_recorder.Sampler) looks every `slow` seconds, but not more often than
#: this (a tracer with slow=0 marks every step slow).
MIN_SAMPLE_INTERVAL = 0.01

#: About 140 bytes per recorded event: the default ring holds ~70 MB at most.
DEFAULT_MAX_EVENTS = 500_000

_clock = time.monotonic


class Tracer:
    """Records one or more conveyor loops; writes Chrome trace JSON or an HTML timeline.

    Use it as a context manager or decorator (see `trace`), or drive it by hand with
    `attach` / `detach` / `write`.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, slow: float = DEFAULT_SLOW,
                 max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if not isinstance(slow, (int, float)) or slow < 0:
            raise ValueError(f"slow must be a non-negative number of seconds, got {slow!r}")
        if not isinstance(max_events, int) or max_events < 1:
            raise ValueError(f"max_events must be a positive int, got {max_events!r}")
        self.path = None if path is None else os.fspath(path)
        self.slow = float(slow)
        self.max_events = max_events
        self._events: deque = deque(maxlen=max_events)
        self._recorders: dict[Any, Recorder] = {}
        self._loops: list[Any] = []
        self._next_serial = 0
        self._origin = _clock()
        self._unwatch: Callable[[], None] | None = None
        self._sampler: Sampler | None = None

    def _new_serial(self) -> int:
        self._next_serial += 1
        return self._next_serial

    # ------------------------------------------------------------ attaching

    def attach(self, loop: LoopInternals) -> None:
        """Start recording ``loop`` (a conveyor EventLoop)."""
        if loop in self._recorders:
            return
        if loop not in self._loops:
            self._loops.append(loop)
        recorder = Recorder(self, self._loops.index(loop) + 1, loop)
        self._recorders[loop] = recorder
        add_instrument(recorder, loop)
        if self._sampler is None:
            self._sampler = Sampler(self._recorders, max(self.slow, MIN_SAMPLE_INTERVAL))

    def detach(self, loop: LoopInternals) -> None:
        recorder = self._recorders.pop(loop, None)
        if recorder is not None:
            remove_instrument(recorder, loop)
            recorder.finish()
        if not self._recorders and self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def start(self) -> "Tracer":
        """Record the running loop, if any, and every conveyor loop created from now on."""
        if self._unwatch is None:
            self._unwatch = on_new_loop(self.attach)
        running = running_conveyor_loop()
        if running is not None:
            self.attach(running)
        for loop in open_loops():
            self.attach(loop)
        return self

    def stop(self) -> None:
        """Stop recording everything; write the file if a path was given."""
        unwatch, self._unwatch = self._unwatch, None
        if unwatch is not None:
            unwatch()
        for loop in list(self._recorders):
            self.detach(loop)
        if self.path is not None:
            self.write(self.path)

    def __enter__(self) -> "Tracer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __call__(self, func: Callable) -> Callable:
        """Decorate a function or coroutine function: trace each call."""
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                with Tracer(self.path, slow=self.slow, max_events=self.max_events):
                    return await func(*args, **kwargs)
            return traced_async

        @functools.wraps(func)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with Tracer(self.path, slow=self.slow, max_events=self.max_events):
                return func(*args, **kwargs)
        return traced

    # --------------------------------------------------------------- output

    @property
    def dropped(self) -> bool:
        """True when the ring buffer filled up and the oldest events were lost."""
        return len(self._events) >= self.max_events

    def to_chrome(self) -> dict:
        return to_chrome(list(self._events), origin=self._origin, slow=self.slow,
                         dropped=self.dropped, loops=len(self._loops))

    def write(self, path: str | os.PathLike) -> None:
        """Write ``.html`` as the offline timeline page, anything else as trace JSON.

        The file is streamed event by event, so writing needs little memory beyond the
        ring buffer itself.
        """
        write_file(path, list(self._events), origin=self._origin, slow=self.slow,
                   dropped=self.dropped, loops=len(self._loops))


def trace(path: str | os.PathLike | None = None, *, slow: float = DEFAULT_SLOW,
          max_events: int = DEFAULT_MAX_EVENTS) -> Tracer:
    """A tracer for ``with`` or as a decorator; writes ``path`` when it stops.

    ``path`` ending in ``.html`` gives the self-contained timeline page, anything else the
    Chrome trace JSON (Perfetto, chrome://tracing). ``slow``: callbacks at least this long
    (seconds) are marked. ``max_events``: size of the ring buffer.
    """
    return Tracer(path, slow=slow, max_events=max_events)
