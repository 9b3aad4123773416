"""Per-task figures in the spirit of tokio-console: steps, busy time, idle time, wake-ups.

`TaskStats` is an instrument: while installed it keeps, for every task it sees step, how
many steps it took, the time they held the loop, the longest one (and the line the task
stopped at after it), when it last ran, how long its last step waited to run once it was
ready, and how often it woke *itself*.

A self-wake is a step after which the task is still pending but waits on no future: the
coroutine yielded bare (``await asyncio.sleep(0)``), so the Task scheduled its own next
step. A task that does that on most of its steps is spinning: it keeps the loop busy
without waiting for anything (tokio-console's "self-wakes" lint).

The scheduled-to-run delay: the loop does not timestamp a callback when it is scheduled
(that would cost on its fast path), so for a self-wake it is exact (from the end of the
step that scheduled the next one), and for any other wake-up it is the wait inside the
iteration's batch, from the end of the poll to the step (as `LoopStats.queue_delay`).

Records are held in a weak dictionary: the figures never keep a task alive.

`lost_wakers` finds tasks that have been pending long on a future nothing else references
(tokio-console's "lost waker"): no timer, no transport, no other task, no container holds
the future, so nothing can ever complete it and the task will wait forever.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import weakref
from typing import Any

from .hooks import Instrument
from .taskdump import next_awaitable

__all__ = ["TaskStats", "TaskRecord", "lost_wakers", "where_suspended"]

_clock = time.monotonic


class TaskRecord:
    """The figures of one task (seconds are monotonic-clock seconds)."""

    __slots__ = ("first_seen", "steps", "busy", "max_step", "max_step_at",
                 "last_step_end", "sched_delay", "self_wakes", "self_wake_at", "_self_woken_at",
                 "slow_steps")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.steps = 0
        self.busy = 0.0
        self.max_step = 0.0
        self.max_step_at = ""          #: "file:line" the task stopped at after its longest step
        self.last_step_end: float | None = None
        self.sched_delay: float | None = None
        self.self_wakes = 0
        self.self_wake_at = ""         #: "file:line" of a self-wake (sampled, see TaskStats)
        self._self_woken_at: float | None = None
        self.slow_steps = 0


_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep


def where_suspended(task: asyncio.Task) -> str:
    """``file:line`` where ``task`` waits: its innermost coroutine frame outside asyncio's
    own package (``app.py:12`` rather than ``asyncio/tasks.py`` inside ``sleep``), or the
    innermost frame if all are asyncio's, or ""."""
    awaitable: Any = task.get_coro()
    where = ""
    inner = ""
    for _ in range(100):
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            break
        filename = frame.f_code.co_filename
        inner = f"{filename}:{frame.f_lineno}"
        if not filename.startswith(_ASYNCIO_DIR):
            where = inner
        awaitable = next_awaitable(awaitable)
        if awaitable is None:
            break
    return where or inner


class TaskStats(Instrument):
    """The per-task counting instrument (see the module docstring).

    ``slow_step``: a step at least this long is counted in ``slow_steps`` and its end line
    is remembered (reading the line costs a frame walk, so only slow steps pay it).
    """

    def __init__(self, *, slow_step: float = 0.05) -> None:
        self.slow_step = slow_step
        self.records: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._poll_ended = _clock()

    def record(self, task: asyncio.Task, now: float | None = None) -> TaskRecord:
        """The record of ``task``, made on first sight. Loop thread only."""
        record = self.records.get(task)
        if record is None:
            record = self.records[task] = TaskRecord(_clock() if now is None else now)
        return record

    # ------------------------------------------------------------------ hooks

    def after_poll(self, timeout: float | None, events: list) -> None:
        self._poll_ended = _clock()

    def task_created(self, task: asyncio.Task) -> None:
        self.record(task)

    def after_callback(self, handle: Any, task: asyncio.Task | None, took: float) -> None:
        if task is None:
            return
        end = _clock()
        record = self.records.get(task)
        if record is None:
            record = self.record(task, end - took)
        start = end - took
        woken = record._self_woken_at
        record.sched_delay = start - (woken if woken is not None else self._poll_ended)
        record.steps += 1
        record.busy += took
        record.last_step_end = end
        if took >= record.max_step:
            record.max_step = took
            if took >= self.slow_step:
                record.max_step_at = where_suspended(task)
        if took >= self.slow_step:
            record.slow_steps += 1
        if not task.done() and getattr(task, "_fut_waiter", 0) is None:
            record.self_wakes += 1
            record._self_woken_at = end
            if record.self_wakes & 255 == 1:
                # Where it yields, sampled (first and every 256th) to keep spinning cheap.
                record.self_wake_at = where_suspended(task)
        else:
            record._self_woken_at = None


def _chain_objects(task: asyncio.Task) -> list[Any]:
    """The task, its coroutines and their await iterators: what a waiter is expected to be
    referenced by when nothing else holds it."""
    found: list[Any] = [task]
    awaitable: Any = task.get_coro()
    for _ in range(100):
        if awaitable is None or asyncio.isfuture(awaitable):
            break
        found.append(awaitable)
        for name in ("cr_frame", "gi_frame", "ag_frame"):
            frame = getattr(awaitable, name, None)
            if frame is not None:
                found.append(frame)
        awaitable = next_awaitable(awaitable)
    return found


def is_lost(task: asyncio.Task) -> bool:
    """True if the future ``task`` waits on is referenced only by the task's own chain.

    Uses ``gc.get_referrers``, which walks every tracked object: call it for a few tasks
    that have already waited long, not for every task on every refresh.
    """
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is None or waiter.done():
        return False
    chain = _chain_objects(task)
    ignore = {id(obj) for obj in chain}
    me = sys._getframe()
    ignore.add(id(me))
    ignore.add(id(chain))
    referrers = gc.get_referrers(waiter)
    ignore.add(id(referrers))
    try:
        for referrer in referrers:
            if id(referrer) in ignore:
                continue
            if type(referrer).__name__ == "FutureIter":
                # The future's own await iterator, held by the awaiting coroutine.
                continue
            return False
        return True
    finally:
        del referrers


def lost_wakers(tasks: list[asyncio.Task], stats: TaskStats, *, after: float,
                cache: dict, since: float, limit: int = 20) -> list[asyncio.Task]:
    """Of ``tasks``, those pending for ``after`` s or more on a future nothing else holds.

    ``since`` is when ``stats`` started: a task it has not seen step has been idle at
    least that long.

    ``cache`` (a dict the caller keeps between calls) remembers the verdict per waiter, so
    each waiter is examined once: an unreferenced future cannot gain a reference, and a
    referenced one is looked at again only after ``after`` more seconds.
    """
    now = _clock()
    found = []
    examined = 0
    for task in tasks:
        if task.done():
            continue
        record = stats.records.get(task)
        last = record.last_step_end if record is not None else None
        if now - (since if last is None else last) < after:
            continue
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is None:
            continue
        key = (id(task), id(waiter))
        verdict = cache.get(key)
        if verdict is None or (not verdict[0] and now - verdict[1] >= after):
            if examined >= limit:
                continue
            examined += 1
            verdict = (is_lost(task), now)
            cache[key] = verdict
        if verdict[0]:
            found.append(task)
    if len(cache) > 10_000:
        cache.clear()
    return found
