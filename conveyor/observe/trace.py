"""The tracer: record what the loop does and write it as Chrome trace JSON or an HTML page.

    with conveyor.trace("out.html"):        # or "out.json"
        conveyor.run(main())

    @conveyor.trace("out.json")             # around a coroutine function or a function
    async def main(): ...

What is recorded, per loop: each iteration; each kernel wait (poll) with its timeout and the
fds it reported ready; each callback with its source, and, when the callback steps a Task,
that task and its coroutine; timers and how late they fired; each task's creation (with the
task that created it), its steps, and how it ended (returned, raised, cancelled).

Why it is shaped this way:
- Recording has to be cheap, so the instrument appends one flat tuple per event to a
  ring buffer (``collections.deque(maxlen=...)``) and only stores keys (code objects, task
  serial numbers); names, source locations and JSON are made once, at write time. The ring
  bounds memory: a long run keeps its most recent events and says how many it lost.
- A callback's start is derived from the duration the loop already measured, so the tracer
  needs no ``before_callback`` hook at all.
- The output is the Trace Event Format (``traceEvents`` with ``ph`` X / i / M), which
  Perfetto and chrome://tracing open; the HTML page embeds the same JSON and draws it with
  its own small script, so it works offline and can be mailed around.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import os
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from .. import loop as loop_mod
from .hooks import Instrument, add_instrument, open_loops, peek_exception, remove_instrument

__all__ = ["Tracer", "trace", "to_chrome", "render_html", "LOOP_TID", "POLL_TID",
           "TASK_TID_BASE"]

#: Lanes (Chrome "threads") of one loop's process.
POLL_TID = 1
LOOP_TID = 2
TASK_TID_BASE = 1000
#: Callbacks at least this long are marked slow unless told otherwise (seconds).
DEFAULT_SLOW = 0.01
#: About 140 bytes per recorded event: the default ring holds ~70 MB at most.
DEFAULT_MAX_EVENTS = 500_000

_TEMPLATE = Path(__file__).with_name("timeline.html")
_DATA_MARK = "/*__CONVEYOR_TRACE_DATA__*/null"
_clock = time.monotonic
_TimerHandle = asyncio.TimerHandle


def _site_key(callback: Any) -> Any:
    """A cheap, long-lived key naming a callback's code: its code object, or a string."""
    func = getattr(callback, "__func__", callback)
    code = getattr(func, "__code__", None)
    if code is not None:
        return code
    if isinstance(func, functools.partial):
        return _site_key(func.func)
    return getattr(func, "__qualname__", None) or type(func).__qualname__


def _site_label(key: Any) -> tuple[str, str]:
    """(name, "file:line") for a key made by `_site_key`."""
    if hasattr(key, "co_filename"):
        return key.co_qualname if hasattr(key, "co_qualname") else key.co_name, \
            f"{key.co_filename}:{key.co_firstlineno}"
    return str(key), ""


def _coro_where(task: asyncio.Task) -> str:
    """Where a task's coroutine is suspended now ("file:line"), or "" if it is finished."""
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    if frame is None:
        return ""
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _coro_name(task: asyncio.Task) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def _outcome(task: asyncio.Task) -> str:
    if task.cancelled():
        return "cancelled"
    exc = peek_exception(task)
    return "returned" if exc is None else f"raised {type(exc).__name__}: {exc}"


class _Recorder(Instrument):
    """The instrument that records one loop into the tracer's shared ring buffer."""

    def __init__(self, tracer: "Tracer", pid: int) -> None:
        self._tracer = tracer
        self._pid = pid
        self._append = tracer._events.append
        self._slow = tracer.slow
        #: id(task) -> (lane serial, weak reference to the task)
        self._serials: dict[int, tuple[int, weakref.ref]] = {}
        self._poll_start = 0.0
        self._poll_end = 0.0
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
            self._append(("tc", self._pid, now, serial, task.get_name(), _coro_name(task),
                          None, True))
            return serial
        return found[0]

    def finish(self) -> None:
        """Recording ends: note the names of tasks still alive (they may have been renamed
        since creation: asyncio.create_task(name=...) names a task after creating it)."""
        now = _clock()
        for serial, ref in list(self._serials.values()):
            task = ref()
            if task is not None:
                self._append(("tn", self._pid, now, serial, task.get_name()))
        self._serials.clear()

    def before_poll(self, timeout: float | None) -> None:
        # An iteration's phase 1 (computing the timeout) takes well under a microsecond, so
        # the poll's start stands for the iteration's start: one hook call fewer.
        self._poll_start = _clock()

    def after_poll(self, timeout: float | None, events: list) -> None:
        self._poll_end = now = _clock()
        self._nevents = len(events)
        if self._poll_start:  # 0.0 if attached (from another thread) during this poll
            self._append(("poll", self._pid, self._poll_start, now, timeout,
                          tuple(events) if events else None))

    def after_callback(self, handle: Any, task: asyncio.Task | None, took: float) -> None:
        end = _clock()
        if task is not None:
            found = self._serials.get(id(task))
            serial = found[0] if found is not None else self._serial(task, end)
            self._append(("step", self._pid, end - took, took, serial,
                          _coro_where(task) if took >= self._slow else None))
            return
        callback = handle._callback
        code = getattr(getattr(callback, "__func__", callback), "__code__", None)
        key = code if code is not None else _site_key(callback)
        if isinstance(handle, _TimerHandle):
            start = end - took
            self._append(("timer", self._pid, start, took, key, start - handle._when))
        else:
            self._append(("cb", self._pid, end - took, took, key))

    def after_iteration(self) -> None:
        if self._poll_start:
            self._append(("it", self._pid, self._poll_start, _clock(), self._nevents))

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
        self._append(("tc", self._pid, now, serial, task.get_name(), _coro_name(task),
                      parent, False))

    def task_done(self, task: asyncio.Task) -> None:
        now = _clock()
        found = self._serials.pop(id(task), None)
        serial = self._tracer._new_serial() if found is None else found[0]
        self._append(("td", self._pid, now, serial, _outcome(task), task.get_name()))


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
        self._recorders: dict[Any, _Recorder] = {}
        self._loops: list[Any] = []
        self._next_serial = 0
        self._origin = _clock()
        self._watching = False

    def _new_serial(self) -> int:
        self._next_serial += 1
        return self._next_serial

    # ------------------------------------------------------------ attaching

    def attach(self, loop: Any) -> None:
        """Start recording ``loop`` (a conveyor EventLoop)."""
        if loop in self._recorders:
            return
        if loop not in self._loops:
            self._loops.append(loop)
        recorder = _Recorder(self, self._loops.index(loop) + 1)
        self._recorders[loop] = recorder
        add_instrument(recorder, loop)

    def detach(self, loop: Any) -> None:
        recorder = self._recorders.pop(loop, None)
        if recorder is not None:
            remove_instrument(recorder, loop)
            recorder.finish()

    def start(self) -> "Tracer":
        """Record the running loop, if any, and every conveyor loop created from now on."""
        if not self._watching:
            self._watching = True
            loop_mod._new_loop_observers.append(self.attach)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and hasattr(running, "_hooks"):
            self.attach(running)
        for loop in open_loops():
            self.attach(loop)
        return self

    def stop(self) -> None:
        """Stop recording everything; write the file if a path was given."""
        if self._watching:
            self._watching = False
            try:
                loop_mod._new_loop_observers.remove(self.attach)
            except ValueError:
                pass
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
        path = os.fspath(path)
        events = list(self._events)
        meta, body = _chrome_parts(events, origin=self._origin, slow=self.slow)
        other = _other_data(self.slow, self.dropped, len(self._loops))
        with open(path, "w", encoding="utf-8") as file:
            if path.lower().endswith((".html", ".htm")):
                head, tail = _TEMPLATE.read_text(encoding="utf-8").split(_DATA_MARK, 1)
                file.write(head)
                _write_json(file, meta, body, other, escape=True)
                file.write(tail)
            else:
                _write_json(file, meta, body, other, escape=False)


def trace(path: str | os.PathLike | None = None, *, slow: float = DEFAULT_SLOW,
          max_events: int = DEFAULT_MAX_EVENTS) -> Tracer:
    """A tracer for ``with`` or as a decorator; writes ``path`` when it stops.

    ``path`` ending in ``.html`` gives the self-contained timeline page, anything else the
    Chrome trace JSON (Perfetto, chrome://tracing). ``slow``: callbacks at least this long
    (seconds) are marked. ``max_events``: size of the ring buffer.
    """
    return Tracer(path, slow=slow, max_events=max_events)


# ------------------------------------------------------------- trace event format

def _us(t: float, origin: float) -> float:
    return round((t - origin) * 1e6, 3)


def _fd_mask(mask: int) -> str:
    parts = [name for bit, name in ((0x001, "readable"), (0x004, "writable"),
                                    (0x008, "error"), (0x010, "hangup")) if mask & bit]
    return "+".join(parts) or hex(mask)


def _chrome_parts(events: list[tuple], *, origin: float,
                  slow: float) -> tuple[list[dict], Iterator[dict]]:
    """(the metadata events, an iterator making the other events one dict at a time).

    Two passes over the recorded tuples: the first learns every task's final name (asyncio
    names a task after the loop created it, and set_name may rename it later) and which
    lanes exist, so the metadata can come first; the second turns each tuple into its
    trace events lazily, so writing a full ring buffer never holds all the dicts at once.
    """
    tasks: dict[tuple[int, int], str] = {}
    coros: dict[tuple[int, int], str] = {}
    pids: set[int] = set()

    def renamed(pid: int, serial: int, name: str) -> None:
        coro = coros.get((pid, serial))
        tasks[(pid, serial)] = f"{name} ({coro})" if coro else name

    for event in events:
        kind, pid = event[0], event[1]
        pids.add(pid)
        if kind == "tc":
            coros[(pid, event[3])] = event[5]
            renamed(pid, event[3], event[4])
        elif kind == "td":
            renamed(pid, event[3], event[5])
        elif kind == "tn":
            renamed(pid, event[3], event[4])
        elif kind == "step" and (pid, event[4]) not in tasks:
            tasks[(pid, event[4])] = f"task #{event[4]}"  # its creation fell off the ring

    meta: list[dict] = []
    for pid in sorted(pids):
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"name": f"conveyor loop {pid}"}})
        for tid, name in ((POLL_TID, "kernel wait (poll)"), (LOOP_TID, "loop")):
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"name": name}})
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"sort_index": tid}})
    for (pid, serial), name in sorted(tasks.items()):
        tid = TASK_TID_BASE + serial
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": f"task {name}"}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"sort_index": tid}})
    return meta, _chrome_events(events, tasks, origin, slow)


def _chrome_events(events: list[tuple], tasks: dict[tuple[int, int], str], origin: float,
                   slow: float) -> Iterator[dict]:
    labels: dict[Any, tuple[str, str]] = {}
    for event in events:
        kind, pid = event[0], event[1]
        if kind == "it":
            _, _, start, end, nevents = event
            yield {"name": "iteration", "cat": "loop", "ph": "X", "pid": pid, "tid": LOOP_TID,
                   "ts": _us(start, origin), "dur": _us(end, start),
                   "args": {"ready_fds": nevents}}
        elif kind == "poll":
            _, _, poll_start, poll_end, timeout, ready = event
            yield {"name": "poll", "cat": "poll", "ph": "X", "pid": pid, "tid": POLL_TID,
                   "ts": _us(poll_start, origin), "dur": _us(poll_end, poll_start),
                   "args": {"timeout": timeout, "ready_fds": len(ready) if ready else 0}}
            for fd, mask in ready or ():
                yield {"name": f"fd {fd} {_fd_mask(mask)}", "cat": "io", "ph": "i", "s": "t",
                       "pid": pid, "tid": POLL_TID, "ts": _us(poll_end, origin),
                       "args": {"fd": fd, "mask": mask}}
        elif kind == "cb" or kind == "timer":
            start, took, key = event[2], event[3], event[4]
            found = labels.get(key)
            if found is None:
                found = labels[key] = _site_label(key)
            name, source = found
            args: dict[str, Any] = {"source": source}
            if kind == "timer":
                args["late_ms"] = round(event[5] * 1e3, 3)
            if took >= slow:
                args["slow"] = True
            yield {"name": name, "cat": "timer" if kind == "timer" else "callback",
                   "ph": "X", "pid": pid, "tid": LOOP_TID, "ts": _us(start, origin),
                   "dur": _us(start + took, start), "args": args}
        elif kind == "step":
            _, _, start, took, serial, where = event
            task = tasks[(pid, serial)]
            args = {"task": task, "task_id": serial}
            if where:
                args["suspended_at"] = where
            if took >= slow:
                args["slow"] = True
            ts, dur = _us(start, origin), _us(start + took, start)
            yield {"name": f"step {task}", "cat": "task_step", "ph": "X", "pid": pid,
                   "tid": LOOP_TID, "ts": ts, "dur": dur, "args": args}
            yield {"name": "step", "cat": "task_step", "ph": "X", "pid": pid,
                   "tid": TASK_TID_BASE + serial, "ts": ts, "dur": dur, "args": args}
        elif kind == "tc":
            _, _, now, serial, _, coro, parent, existing = event
            args = {"task": tasks[(pid, serial)], "coro": coro}
            if parent is not None:
                args["spawned_by"] = tasks.get((pid, parent), f"task #{parent}")
                args["parent_id"] = parent
            yield {"name": "already running" if existing else "created", "cat": "task",
                   "ph": "i", "s": "t", "pid": pid, "tid": TASK_TID_BASE + serial,
                   "ts": _us(now, origin), "args": args}
        elif kind == "td":
            _, _, now, serial, outcome, _ = event
            yield {"name": outcome.split(" ", 1)[0], "cat": "task", "ph": "i", "s": "t",
                   "pid": pid, "tid": TASK_TID_BASE + serial, "ts": _us(now, origin),
                   "args": {"outcome": outcome}}


def _other_data(slow: float, dropped: bool, loops: int) -> dict:
    return {"producer": "conveyor", "slow_threshold_ms": slow * 1e3,
            "ring_buffer_overflowed": dropped, "loops": loops}


def to_chrome(events: list[tuple], *, origin: float, slow: float = DEFAULT_SLOW,
              dropped: bool = False, loops: int = 1) -> dict:
    """Recorded tuples as one Trace Event Format object (``{"traceEvents": [...]}``)."""
    meta, body = _chrome_parts(events, origin=origin, slow=slow)
    return {"traceEvents": meta + list(body), "displayTimeUnit": "ms",
            "otherData": _other_data(slow, dropped, loops)}


def _escape_for_script(text: str) -> str:
    # Inside an HTML <script>, "</script" or "<!--" would confuse the parser; "<" occurs
    # only inside JSON strings, where "\u003c" means the same.
    return text.replace("<", "\\u003c")


def _write_json(file: TextIO, meta: list[dict], body: Iterator[dict], other: dict,
                escape: bool) -> None:
    """Stream the trace object to ``file``, one event at a time."""
    dumps = functools.partial(json.dumps, separators=(",", ":"))
    fix = _escape_for_script if escape else str
    file.write('{"traceEvents":[')
    first = True
    for event in itertools.chain(meta, body):
        if not first:
            file.write(",")
        first = False
        file.write(fix(dumps(event)))
    file.write('],"displayTimeUnit":"ms","otherData":' + fix(dumps(other)) + "}")


def render_html(data: dict) -> str:
    """The timeline page with ``data`` (a `to_chrome` object) embedded; no network needed."""
    head, tail = _TEMPLATE.read_text(encoding="utf-8").split(_DATA_MARK, 1)
    return head + _escape_for_script(json.dumps(data, separators=(",", ":"))) + tail
