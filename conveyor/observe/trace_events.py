"""What the tracer records: one NamedTuple per kind of event, the only place that says which
field holds what.

The recorder (trace_recorder.py) appends *plain tuples* laid out exactly as the classes here
say, the kind's tag first; the writers (trace_writers.py) give them their names with `named`
and read fields by name. Nothing else reads a recorded event. tests/functional/test_trace.py
checks every kind the recorder makes against the annotations here.

Why plain tuples on the record path: building a NamedTuple calls its Python ``__new__``
(about 240 ns against 40 ns for a tuple literal), and the tracer records at least one event
per callback. Measured with ``python -m conveyor.bench.observe --only callbacks``: a traced
``call_soon`` chain ran at 0.37x of the plain loop recording tuples, 0.27x recording
NamedTuples. The layout is the same, so ``Kind._make(recorded)`` is the event with names,
made only when the file is written.

Common fields: ``kind`` is the tag (the constants below), ``loop`` numbers the traced loop
(1, 2, ... in the order the tracer met them; the Chrome "pid"), times are
``time.monotonic()`` seconds, ``task`` is the tracer's serial number for a task (its lane).
Events store keys, not text (a code object, a serial number): names and source locations are
made at write time. The exception is a slow step's `Site`s (sites.py): they must be read
while the frames exist, and slow steps are few.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple

from .sites import Site

__all__ = ["ITERATION", "POLL", "CALLBACK", "TIMER", "STEP", "TASK_CREATED", "TASK_DONE",
           "TASK_NAMED", "Iteration", "Poll", "Callback", "Timer", "Step", "TaskCreated",
           "TaskDone", "TaskNamed", "Event", "KINDS", "named", "DEFAULT_SLOW"]

#: A step or callback at least this long is slow (seconds): a slow step records the line it
#: was seen running and where its coroutine stopped (`Step.blocked_at`, `Step.suspended_at`),
#: and the writers mark slow events.
DEFAULT_SLOW = 0.01

ITERATION = "iteration"
POLL = "poll"
CALLBACK = "callback"
TIMER = "timer"
STEP = "step"
TASK_CREATED = "task_created"
TASK_DONE = "task_done"
TASK_NAMED = "task_named"


class Iteration(NamedTuple):
    """One turn of the loop, from the start of its poll to the end of its last callback."""
    kind: str
    loop: int
    start: float
    end: float
    ready_fds: int          # how many (fd, events) the poll returned


class Poll(NamedTuple):
    """One wait in the kernel."""
    kind: str
    loop: int
    start: float
    end: float
    timeout: float | None   # seconds; None waits for ever
    ready: tuple[tuple[int, int], ...] | None  # (fd, poll(2) mask) pairs; None if none


class Callback(NamedTuple):
    """A ready callback that is not a task step (a plain call_soon, an fd callback)."""
    kind: str
    loop: int
    start: float
    took: float
    site: Any               # its code object, or a name if it has none (site_key)


class Timer(NamedTuple):
    """A timer callback (call_later / call_at)."""
    kind: str
    loop: int
    start: float
    took: float
    site: Any               # as Callback.site
    late: float             # seconds between its due time and its start


class Step(NamedTuple):
    """One step of a task: its coroutine ran from one await to the next."""
    kind: str
    loop: int
    start: float
    took: float
    task: int
    # Recorded for slow steps only (None otherwise), made by sites.py's rules:
    blocked_at: Site | None   # the program's line it was seen running (a sample taken
                              # while it ran); None if no sample fell inside it
    suspended_at: Site | None  # where its coroutine stopped after it: the next await, or
                               # the first line once the coroutine has finished


class TaskCreated(NamedTuple):
    """A task got its lane: at its creation, or at its first step if it predates tracing."""
    kind: str
    loop: int
    at: float
    task: int
    name: str
    coro: str               # the coroutine's qualified name
    parent: int | None      # the task that created it, if it was created inside one
    existing: bool          # True: it was already running when tracing began


class TaskDone(NamedTuple):
    """A task finished."""
    kind: str
    loop: int
    at: float
    task: int
    outcome: str            # "returned", "cancelled" or "raised Type: message"
    name: str               # its name by then (set_name may have changed it)


class TaskNamed(NamedTuple):
    """The name of a task still alive when recording stopped."""
    kind: str
    loop: int
    at: float
    task: int
    name: str


Event = (Iteration | Poll | Callback | Timer | Step | TaskCreated | TaskDone | TaskNamed)

#: tag -> the class that names an event of that kind.
KINDS: dict[str, type[Event]] = {
    ITERATION: Iteration, POLL: Poll, CALLBACK: Callback, TIMER: Timer, STEP: Step,
    TASK_CREATED: TaskCreated, TASK_DONE: TaskDone, TASK_NAMED: TaskNamed,
}


def named(events: Iterable[tuple]) -> Iterator[Event]:
    """Recorded tuples as the NamedTuples above (a tuple of the wrong length raises)."""
    kinds = KINDS
    for event in events:
        yield kinds[event[0]]._make(event)
