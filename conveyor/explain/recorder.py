"""The step recorder behind ``explain``: what the talk's diagram shows, at every step.

A *step* is one thing the talk would animate:

- ``poll``: the loop asks the kernel what is ready, and sleeps there until something is or a
  timer is due (how long, for how long at most, which fds answered);
- ``run``: the loop takes a callback from the front of the ready queue and runs it (a Task's
  step is such a callback: it resumes the coroutine where its last ``await`` left it);
- ``print``: the running code prints (the real Python stack at that moment);
- ``return``: the callback gave control back to the loop (a coroutine stopped at an
  ``await``, or finished).

Each step carries a full snapshot: the stack, the ready queue (`CoreLoop._snapshot_queue`),
the timers with their deadlines, the tasks and the future each awaits, the last kernel wait,
and the four layers (coroutine, Task, loop, poller) as the talk labels them. Snapshots are
copied at every step, which is only reasonable for short programs: past `STEP_LIMIT` steps
the run is ended with `TooManySteps`, whose message points to ``trace``.
"""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
import time
import weakref
from typing import Any, Callable

from ..contract import LoopInternals
from ..core import LOOP_CODES, on_new_loop
from ..observe.hooks import (Instrument, add_instrument, peek_exception, remove_instrument,
                              task_of)
from ..observe.sites import callback_site, coroutine_name, function_of
from ..observe.taskdump import await_frames

__all__ = ["STEP_LIMIT", "Recording", "LoopRecorder", "TooManySteps"]

#: More steps than this and the replay stops being readable (and the page heavy).
STEP_LIMIT = 5000
#: A callback that runs this long (seconds) is called out as blocking the loop.
BLOCKED = 0.1
#: Source lines kept either side of every line a step points at.
CONTEXT = 3

_clock = time.monotonic
_WAKEUP_NAMES = frozenset({"task_wakeup", "__wakeup"})


class TooManySteps(SystemExit):
    """The program ran past the step limit; raised from a loop hook to end it.

    A SystemExit, so it travels like ``sys.exit(message)``: the loop passes it on, the
    runner cancels the program's tasks, ``run_as_main`` prints the message; and the
    program's own ``except Exception`` does not swallow it.
    """


class Recording:
    """Everything one ``explain`` run records: steps, printed output, source excerpts."""

    def __init__(self, limit: int = STEP_LIMIT) -> None:
        self.limit = limit
        self.steps: list[dict[str, Any]] = []
        #: [step index, text] for every write to stdout, in order.
        self.output: list[list[Any]] = []
        #: file -> {line number: source text}, only around the lines steps point at.
        self.sources: dict[str, dict[int, str]] = {}
        self.refused = False
        self._start = _clock()
        self._thread = threading.get_ident()
        self._recorders: dict[int, LoopRecorder] = {}
        self._labels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._futures_seen = 0
        self._order: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._stop_watching: Callable[[], None] | None = None
        self._real_stdout: Any = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Recording:
        """Record every conveyor loop created from now on, and what is printed."""
        self._stop_watching = on_new_loop(self.attach)
        self._real_stdout = sys.stdout
        sys.stdout = _Tee(self, sys.stdout)
        return self

    def stop(self) -> None:
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None
        if self._real_stdout is not None:
            if isinstance(sys.stdout, _Tee):
                sys.stdout = self._real_stdout
            self._real_stdout = None
        for recorder in list(self._recorders.values()):
            recorder.detach()

    def attach(self, loop: LoopInternals) -> LoopRecorder:
        recorder = LoopRecorder(self, loop, len(self._recorders) + 1)
        self._recorders[id(loop)] = recorder
        add_instrument(recorder, loop)
        return recorder

    def refusal(self, program: str) -> str:
        return (f"conveyor explain: {program} took more than {self.limit} steps; explain "
                f"replays short programs one step at a time.\nFor a longer run, record a "
                f"timeline instead:  python -m conveyor trace -o trace.html {program}")

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "output": self.output,
                "sources": {path: {str(n): text for n, text in sorted(lines.items())}
                            for path, lines in self.sources.items()}}

    # ------------------------------------------------------------------ recording

    def now(self) -> float:
        return round(_clock() - self._start, 6)

    def add_step(self, step: dict[str, Any]) -> int:
        """Append a step; past the limit, mark the run refused (a hook then ends it)."""
        if len(self.steps) >= self.limit:
            self.refused = True
            return -1
        step["n"] = len(self.steps)
        self.steps.append(step)
        return step["n"]

    def label(self, obj: Any) -> str:
        """A short, stable name for a future or task, the same at every step."""
        if isinstance(obj, asyncio.Task):
            name = obj.get_name()
            return name if name.startswith("Task-") else f"Task {name}"
        if asyncio.isfuture(obj):
            try:
                found = self._labels.get(obj)
                if found is None:
                    self._futures_seen += 1
                    found = self._labels[obj] = f"Future #{self._futures_seen}"
                return found
            except TypeError:  # a future type that cannot be weakly referenced
                return type(obj).__name__
        return describe_value(obj)

    def frame(self, name: str, filename: str, line: int) -> dict[str, Any]:
        """A stack record, keeping the source lines around it for the page."""
        if filename and line:
            kept = self.sources.setdefault(filename, {})
            for number in range(max(1, line - CONTEXT), line + CONTEXT + 1):
                if number not in kept:
                    text = linecache.getline(filename, number)
                    if text:
                        kept[number] = text.rstrip("\n")
        return {"name": name, "file": filename, "line": line}

    def task_order(self, task: asyncio.Task) -> int:
        found = self._order.get(task)
        if found is None:
            found = self._order[task] = len(self._order)
        return found

    def printed(self, text: str, frame: Any) -> None:
        """A write to stdout: a ``print`` step, or more of the last one (a bare newline)."""
        if not text or self.refused:
            return
        if threading.get_ident() != self._thread or not text.strip():
            self.output.append([max(len(self.steps) - 1, 0), text])
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        recorder = self._recorders.get(id(loop)) if loop is not None else None
        stack = self._stack_from(frame)
        index = len(self.steps)
        self.output.append([index, text])
        shown = text.strip().splitlines()[0]
        if len(shown) > 60:
            shown = shown[:57] + "..."
        what = f"prints {shown!r}"
        if recorder is None:
            self.add_step({"k": "print", "t": self.now(), "what": what, "stack": stack,
                           "queue": [], "timers": [], "tasks": [], "kernel": None,
                           "layers": _layers_outside_loop(stack)})
        else:
            recorder.print_step(what, stack)

    def _stack_from(self, frame: Any) -> list[dict[str, Any]]:
        """The program's frames, outermost first, up to the loop (or the script's start)."""
        frames = []
        while frame is not None and frame.f_code not in LOOP_CODES:
            if frame.f_globals.get("__name__") == "runpy":
                break  # what ran the script (run_as_main, python -m): not the program's
            frames.append(self.frame(frame.f_code.co_qualname, frame.f_code.co_filename,
                                     frame.f_lineno))
            frame = frame.f_back
        frames.reverse()
        return frames


class LoopRecorder(Instrument):
    """Records one loop's steps into a `Recording`."""

    def __init__(self, recording: Recording, loop: LoopInternals, number: int) -> None:
        self._recording = recording
        self._loop = loop
        self._number = number
        self._iteration = 0
        self._callbacks = 0
        self._poll_started = 0.0
        self._kernel: dict[str, Any] | None = None
        self._running: asyncio.Task | None = None

    def detach(self) -> None:
        if self._loop is not None:
            if not self._loop.is_closed():
                remove_instrument(self, self._loop)
            self._loop = None

    def _check(self) -> None:
        """Past the limit, end the program: only from before_poll, where nothing has been
        taken off the ready queue (a task whose step was dropped could never be cancelled,
        and the runner's cleanup would wait for it forever)."""
        if self._recording.refused:
            for recorder in list(self._recording._recorders.values()):
                recorder.detach()
            raise TooManySteps(self._recording.refusal(" ".join(sys.argv) or "the program"))

    # ------------------------------------------------------------------ hooks

    def before_poll(self, timeout: float | None) -> None:
        self._check()
        self._iteration += 1
        self._callbacks = 0
        self._poll_started = _clock()

    def after_poll(self, timeout: float | None, events: list) -> None:
        slept = _clock() - self._poll_started
        snapshot = self._loop._snapshot_queue()
        ready = [[fd, _mask_text(mask)] for fd, mask in events]
        self._kernel = {"backend": snapshot.poller, "timeout": timeout,
                        "slept": round(slept, 6), "events": ready,
                        "fds": self._loop._gauges().fds, "iteration": self._iteration}
        limit = "no timeout" if timeout is None else f"timeout {timeout:.3f} s"
        if timeout == 0:
            what = f"{snapshot.poller}.poll: a quick look ({limit}), work is ready"
        else:
            what = f"{snapshot.poller}.poll: the loop sleeps in the kernel ({limit})"
        what += f"; woke after {slept:.3f} s, {len(ready)} fd(s) ready"
        layers = [["coroutine", "- (no Python code of the program runs while the loop polls)"],
                  ["Task", "- (every task is waiting or queued)"],
                  ["event loop", f"iteration {self._iteration}: nothing left to run, so it "
                                 f"asks the poller what is ready"],
                  ["poller", f"{snapshot.poller}.poll({_seconds(timeout)}) slept "
                             f"{slept:.3f} s, {len(ready)} fd(s) ready"]]
        # The timers as the loop saw them when it went to sleep: the soonest one is what
        # the timeout was computed from.
        self._record("poll", what, [], layers, snapshot, now=self._poll_started)

    def before_callback(self, handle: Any, task: asyncio.Task | None) -> None:
        self._callbacks += 1
        self._running = task
        recording = self._recording
        snapshot = self._loop._snapshot_queue()
        behind = sum(1 for queued in snapshot.ready if not queued._cancelled)
        where = (f"iteration {self._iteration}: callback {self._callbacks}, taken from the "
                 f"front of the ready queue ({behind} behind it)")
        if task is not None:
            stack = self._chain(task)
            inner = stack[-1] if stack else None
            kind = "wake-up" if _callback_name(handle) in _WAKEUP_NAMES else "step"
            coro = coroutine_name(task.get_coro())
            what = f"runs a {kind} of {recording.label(task)} ({coro})"
            coroutine = (f"{inner['name']} resumes at line {inner['line']}" if inner
                         else coro)
            layers = [["coroutine", coroutine],
                      ["Task", f"{recording.label(task)}: its step sends into the coroutine, "
                               f"which runs until its next await"],
                      ["event loop", where], ["poller", self._poller_text()]]
        else:
            site = callback_site(handle, None)
            stack = [recording.frame(site.name, site.filename, site.lineno)]
            what = f"runs {describe_handle(recording, handle, {})}"
            layers = [["coroutine", "- (a plain callback: no coroutine)"],
                      ["Task", "- (no task)"], ["event loop", where],
                      ["poller", self._poller_text()]]
        self._record("run", what, stack, layers, snapshot, task)

    def after_callback(self, handle: Any, task: asyncio.Task | None, took: float) -> None:
        self._running = None
        recording = self._recording
        back = "back in the loop: it takes the next callback, or polls when none is left"
        if took >= BLOCKED:
            back = (f"back in the loop after {took:.3f} s: the loop was blocked all that "
                    f"time, nothing else could run (timers came due late)")
        if task is not None:
            name = recording.label(task)
            if task.done():
                what = f"{name} finished ({_outcome(task)}) after {took * 1000:.2f} ms"
                stack: list[dict[str, Any]] = []
                layers = [["coroutine", f"{coroutine_name(task.get_coro())} returned"],
                          ["Task", f"{name} is done: whoever awaits it gets a wake-up queued"],
                          ["event loop", back], ["poller", self._poller_text()]]
            else:
                what, stack, layers = self._paused(task, name, took, back)
        else:
            what = f"{_callback_label(handle)} returned after {took * 1000:.2f} ms"
            stack = []
            layers = [["coroutine", "- (a plain callback: no coroutine)"],
                      ["Task", "- (no task)"], ["event loop", back],
                      ["poller", self._poller_text()]]
        if took >= BLOCKED:
            what += " - it blocked the loop"
        self._record("return", what, stack, layers, self._loop._snapshot_queue(), task)

    def _paused(self, task: asyncio.Task, name: str, took: float,
                back: str) -> tuple[str, list[dict[str, Any]], list[list[str]]]:
        """What a task step that stopped at an ``await`` did: the talk's key moment."""
        stack = self._chain(task)
        inner = stack[-1] if stack else None
        at = f"{inner['name']}, line {inner['line']}" if inner else "its coroutine"
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is not None:
            awaits = self._recording.label(waiter)
            what = f"{name} stops at an await and waits for {awaits} ({at})"
            coroutine = (f"{at}: `await` suspends the coroutine and hands {awaits} up to "
                         f"its Task")
            task_text = (f"{name} parks on {awaits}; when {awaits} is done, its callback "
                         f"queues a wake-up of {name}")
        else:
            what = f"{name} yields with no future (as asyncio.sleep(0) does) ({at})"
            coroutine = f"{at}: a bare yield suspends the coroutine"
            task_text = (f"{name} queues its own next step at once, at the back of the "
                         f"ready queue")
        what += f"; the step ran {took * 1000:.2f} ms"
        layers = [["coroutine", coroutine], ["Task", task_text], ["event loop", back],
                  ["poller", self._poller_text()]]
        return what, stack, layers

    def task_created(self, task: asyncio.Task) -> None:
        self._recording.task_order(task)  # the tasks panel lists tasks in creation order

    # ------------------------------------------------------------------ steps

    def print_step(self, what: str, stack: list[dict[str, Any]]) -> None:
        task = self._running
        inner = stack[-1] if stack else None
        layers = [["coroutine", f"{inner['name']}, line {inner['line']}" if inner else "-"],
                  ["Task", self._recording.label(task) + " is running its step"
                   if task is not None else "- (a plain callback: no task)"],
                  ["event loop", f"iteration {self._iteration}: running callback "
                                 f"{self._callbacks}; the loop waits for it to return"],
                  ["poller", self._poller_text()]]
        self._record("print", what, stack, layers, self._loop._snapshot_queue(), task)

    def _record(self, kind: str, what: str, stack: list[dict[str, Any]],
                layers: list[list[str]], snapshot: Any,
                task: asyncio.Task | None = None, now: float | None = None) -> None:
        recording = self._recording
        if recording.refused:
            return
        if now is None:
            now = _clock()
        tasks = self._tasks(snapshot)
        waiting = {task_["awaits_id"]: task_["name"] for task_ in tasks if task_["awaits_id"]}
        step = {"k": kind, "t": recording.now(), "loop": self._number,
                "it": self._iteration, "what": what, "stack": stack,
                "queue": [describe_handle(recording, handle, waiting)
                          for handle in snapshot.ready if not handle._cancelled],
                "timers": [[round(when - now, 6), describe_handle(recording, handle, waiting)]
                           for when, handle in snapshot.timers],
                "tasks": [{key: value for key, value in task_.items() if key != "awaits_id"}
                          for task_ in tasks],
                "kernel": self._kernel, "layers": layers}
        if task is not None:
            step["task"] = recording.label(task)
        recording.add_step(step)

    def _chain(self, task: asyncio.Task) -> list[dict[str, Any]]:
        """The task's coroutines, outermost first, each at the line it is suspended at."""
        frames = []
        for record in await_frames(task):
            if "file" in record:
                frames.append(self._recording.frame(record["name"], record["file"],
                                                    record["line"]))
        return frames

    def _tasks(self, snapshot: Any) -> list[dict[str, Any]]:
        """Every live task: running, ready (a step of it is queued) or waiting on a future."""
        recording = self._recording
        snapshot_ready = {id(found) for found in map(task_of, snapshot.ready)
                          if found is not None}
        rows = []
        for task in sorted(asyncio.all_tasks(self._loop), key=recording.task_order):
            waiter = getattr(task, "_fut_waiter", None)
            if task is self._running:
                state = "running"
            elif id(task) in snapshot_ready:
                state = "ready"
            else:
                state = "waiting"
            frames = await_frames(task)
            inner = next((record for record in reversed(frames) if "file" in record), None)
            rows.append({"name": recording.label(task),
                         "coro": coroutine_name(task.get_coro()), "state": state,
                         "awaits": recording.label(waiter) if waiter is not None else "",
                         "awaits_id": id(waiter) if waiter is not None else 0,
                         "at": f"{inner['name']} line {inner['line']}" if inner else ""})
        return rows

    def _poller_text(self) -> str:
        kernel = self._kernel
        if kernel is None:
            return "- (the loop has not polled yet)"
        return (f"{kernel['backend']}: last wait (iteration {kernel['iteration']}) "
                f"{kernel['slept']:.3f} s of {_seconds(kernel['timeout'])}, "
                f"{len(kernel['events'])} fd(s) ready")


# ------------------------------------------------------------------ descriptions

def _callback_name(handle: Any) -> str | None:
    return getattr(handle._callback, "__name__", None)


def _callback_label(handle: Any) -> str:
    func = function_of(handle._callback) if handle._callback is not None else None
    return getattr(func, "__qualname__", None) or type(func).__name__


def describe_value(value: Any) -> str:
    """An argument as a few characters: enough to tell callbacks apart, never a long repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 20 else value[:17] + "...")
    if callable(value):
        func = function_of(value)
        return getattr(func, "__qualname__", None) or type(func).__name__
    return type(value).__name__


def describe_handle(recording: Recording, handle: Any, waiting: dict[int, str]) -> str:
    """A queued callback as the page lists it: ``step of Task x (coro)`` or ``f(args)``,
    with the task it will wake when one of its arguments is a future a task awaits."""
    if handle._callback is None:
        return "(cancelled)"
    task = task_of(handle)
    if task is not None:
        kind = "wake-up" if _callback_name(handle) in _WAKEUP_NAMES else "step"
        return f"{kind} of {recording.label(task)} ({coroutine_name(task.get_coro())})"
    args = ", ".join(recording.label(arg) for arg in handle._args or ())
    text = f"{_callback_label(handle)}({args})"
    woken = [waiting[id(arg)] for arg in handle._args or () if id(arg) in waiting]
    if woken:
        text += f" -> wakes {', '.join(woken)}"
    return text


def _outcome(task: asyncio.Task) -> str:
    if task.cancelled():
        return "cancelled"
    exc = peek_exception(task)
    return "returned" if exc is None else f"raised {type(exc).__name__}"


def _mask_text(mask: int) -> str:
    names = [name for bit, name in ((1, "readable"), (4, "writable"), (8, "error"),
                                    (16, "hang-up")) if mask & bit]
    return "+".join(names) or str(mask)


def _seconds(timeout: float | None) -> str:
    return "no timeout" if timeout is None else f"timeout {timeout:.3f} s"


def _layers_outside_loop(stack: list[dict[str, Any]]) -> list[list[str]]:
    inner = stack[-1] if stack else None
    return [["coroutine", f"{inner['name']}, line {inner['line']}" if inner else "-"],
            ["Task", "- (no loop is running: plain synchronous code)"],
            ["event loop", "- (not running)"], ["poller", "-"]]


class _Tee:
    """sys.stdout while recording: writes go through, and each is recorded with its step."""

    def __init__(self, recording: Recording, real: Any) -> None:
        self._recording = recording
        self._real = real

    def write(self, text: str) -> int:
        written = self._real.write(text)
        try:
            self._recording.printed(text, sys._getframe(1))
        except Exception:  # recording must never break the program's own output
            pass
        return written

    def flush(self) -> None:
        self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
