"""Loop statistics: how busy the loop is, how late it runs things, and what is slow.

    stats = conveyor.collect_stats()      # start counting on the running loop
    ...
    print(stats.snapshot())               # or conveyor.loop_stats() for the numbers now

Counting needs instrument hooks, so it starts when `collect_stats` installs a `LoopStats`
on the loop (the uninstrumented loop pays nothing). The gauges (open fds, pending timers,
ready callbacks, live tasks) are read from the loop at snapshot time (`loop._gauges()`).

What the figures mean:
- ``utilization``: the share of wall time the loop spent outside the kernel wait, as libuv's
  ``uv_metrics_idle_time`` and Node's ``eventLoopUtilization`` define it. Near 1.0 means
  the loop is saturated: every callback added delays everything else.
- ``timer_lag``: how late each timer callback started against its deadline. Lag grows when
  callbacks run long or the loop is saturated; it is what a user feels as jitter.
- ``queue_delay``: how long each callback waited in its iteration's batch, from the end of
  the poll until it started. The loop does not stamp a handle when it is scheduled (that
  would cost on the fast path), so this is the wait behind the callbacks ahead of it in the
  same batch, which is where a slow neighbour shows up.
- ``slowest``: the longest callbacks seen, with the source location that ran.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..contract import LoopInternals
from .hooks import Instrument, add_instrument, instruments, remove_instrument
from .sites import callback_site

__all__ = ["LoopStats", "Histogram", "Snapshot", "SlowCallback", "collect_stats",
           "loop_stats"]

_clock = time.monotonic
#: Histogram bucket upper bounds in seconds: 10 us to 10 s, about three per decade.
BUCKETS = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2,
           0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Histogram:
    """Counts of durations in fixed buckets (`BUCKETS`); the last bucket is open-ended."""

    __slots__ = ("counts", "count", "total", "max")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, value: float) -> None:
        if value < 0:
            value = 0.0
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.count += 1
        self.total += value
        if value > self.max:
            self.max = value

    def percentile(self, p: float) -> float:
        """The upper bound of the bucket holding the p-th percentile (0 < p <= 100)."""
        if not self.count:
            return 0.0
        rank = p / 100 * self.count
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return BUCKETS[index] if index < len(BUCKETS) else self.max
        return self.max

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.total / self.count if self.count else 0.0,
                "p50": self.percentile(50), "p99": self.percentile(99), "max": self.max,
                "buckets": {f"<={bound:g}s": n for bound, n in
                            zip((*BUCKETS, float("inf")), self.counts) if n}}


@dataclass(order=True)
class SlowCallback:
    took: float
    callback: str = field(compare=False)
    source: str = field(compare=False)
    task: str | None = field(compare=False, default=None)


@dataclass
class Snapshot:
    """Figures since counting started (``elapsed`` seconds ago) plus gauges read now."""

    elapsed: float
    iterations: int
    callbacks: int
    task_steps: int
    tasks_created: int
    tasks_done: int
    poll_time: float
    callback_time: float
    utilization: float
    timer_lag: dict[str, Any]
    queue_delay: dict[str, Any]
    slowest: list[SlowCallback]
    active_fds: int
    pending_timers: int
    ready_callbacks: int
    tasks_alive: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        lines = [
            f"conveyor loop stats over {self.elapsed:.3f} s",
            f"  iterations {self.iterations}, callbacks {self.callbacks} "
            f"(task steps {self.task_steps})",
            f"  tasks created {self.tasks_created}, done {self.tasks_done}, "
            f"alive {self.tasks_alive}",
            f"  time in poll {self.poll_time:.3f} s, running callbacks "
            f"{self.callback_time:.3f} s, utilization {self.utilization:.1%}",
            f"  timer lag p50 {self.timer_lag['p50'] * 1e3:.3f} ms, p99 "
            f"{self.timer_lag['p99'] * 1e3:.3f} ms, max {self.timer_lag['max'] * 1e3:.3f} ms"
            f" ({self.timer_lag['count']} timers)",
            f"  queue delay p50 {self.queue_delay['p50'] * 1e3:.3f} ms, p99 "
            f"{self.queue_delay['p99'] * 1e3:.3f} ms, max "
            f"{self.queue_delay['max'] * 1e3:.3f} ms",
            f"  active fds {self.active_fds}, pending timers {self.pending_timers}, "
            f"ready callbacks {self.ready_callbacks}",
        ]
        if self.slowest:
            lines.append("  slowest callbacks:")
            for slow in self.slowest:
                where = f" at {slow.source}" if slow.source else ""
                task = f" [{slow.task}]" if slow.task else ""
                lines.append(f"    {slow.took * 1e3:9.3f} ms  {slow.callback}{task}{where}")
        return "\n".join(lines)


class LoopStats(Instrument):
    """The counting instrument. Install with `collect_stats`."""

    def __init__(self, loop: LoopInternals, *, keep_slowest: int = 10) -> None:
        self.loop = loop
        self.keep_slowest = keep_slowest
        self.reset()

    def reset(self) -> None:
        """Start counting afresh."""
        self.started = _clock()
        self.iterations = 0
        self.callbacks = 0
        self.task_steps = 0
        self.tasks_created = 0
        self.tasks_done = 0
        self.poll_time = 0.0
        self.callback_time = 0.0
        self.timer_lag = Histogram()
        self.queue_delay = Histogram()
        self._slowest: list[tuple[float, int, SlowCallback]] = []
        self._tie = itertools.count()
        self._poll_started = 0.0
        self._poll_ended = _clock()
        #: True while the loop waits in the kernel: a snapshot taken from another thread
        #: (the live console) then counts the wait so far as poll time, not as busy time.
        self.in_poll = False

    # -------------------------------------------------------------- hooks

    def before_poll(self, timeout: float | None) -> None:
        self._poll_started = _clock()
        self.in_poll = True

    def after_poll(self, timeout: float | None, events: list) -> None:
        self.in_poll = False
        self._poll_ended = now = _clock()
        self.poll_time += now - self._poll_started
        self.iterations += 1

    def after_callback(self, handle: Any, task: asyncio.Task | None, took: float) -> None:
        self.callbacks += 1
        self.callback_time += took
        start = _clock() - took
        self.queue_delay.add(start - self._poll_ended)
        if task is not None:
            self.task_steps += 1
        else:
            when = getattr(handle, "_when", None)
            if when is not None:
                self.timer_lag.add(start - when)
        slowest = self._slowest
        if len(slowest) < self.keep_slowest or took > slowest[0][0]:
            site = callback_site(handle, task)
            name, source = site.name, site.where()
            entry = SlowCallback(took, name, source,
                                 task.get_name() if task is not None else None)
            item = (took, next(self._tie), entry)
            if len(slowest) < self.keep_slowest:
                heapq.heappush(slowest, item)
            else:
                heapq.heapreplace(slowest, item)

    def task_created(self, task: asyncio.Task) -> None:
        self.tasks_created += 1

    def task_done(self, task: asyncio.Task) -> None:
        self.tasks_done += 1

    # ------------------------------------------------------------ reading

    def snapshot(self) -> Snapshot:
        """The figures now.

        Meant for the loop's thread; from another thread (the live console) it is a
        best-effort read: each figure is consistent, the set of them may straddle a
        callback.
        """
        loop = self.loop
        now = _clock()
        elapsed = now - self.started
        poll_time = self.poll_time
        if self.in_poll:
            poll_time += max(now - self._poll_started, 0.0)
        busy = max(elapsed - poll_time, 0.0)
        gauges = loop._gauges()
        try:
            alive = len(asyncio.all_tasks(loop))
        except RuntimeError:
            alive = 0
        return Snapshot(
            elapsed=elapsed, iterations=self.iterations, callbacks=self.callbacks,
            task_steps=self.task_steps, tasks_created=self.tasks_created,
            tasks_done=self.tasks_done, poll_time=poll_time,
            callback_time=self.callback_time,
            utilization=busy / elapsed if elapsed > 0 else 0.0,
            timer_lag=self.timer_lag.as_dict(), queue_delay=self.queue_delay.as_dict(),
            slowest=[item[2] for item in sorted(list(self._slowest), reverse=True)],
            active_fds=gauges.fds, pending_timers=gauges.timers,
            ready_callbacks=gauges.ready, tasks_alive=alive)

    def close(self) -> None:
        """Stop counting (uninstall from the loop)."""
        remove_instrument(self, self.loop)


def collect_stats(loop: LoopInternals | None = None, *, keep_slowest: int = 10) -> LoopStats:
    """The `LoopStats` counting on ``loop`` (default: the running loop), installed if needed."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if not isinstance(keep_slowest, int) or keep_slowest < 0:
        raise ValueError(f"keep_slowest must be a non-negative int, got {keep_slowest!r}")
    for instrument in instruments(loop):
        if isinstance(instrument, LoopStats):
            return instrument
    stats = LoopStats(loop, keep_slowest=keep_slowest)
    add_instrument(stats, loop)
    return stats


def loop_stats(loop: LoopInternals | None = None) -> Snapshot:
    """A snapshot of ``loop``'s statistics; starts counting (from zero) on first call."""
    return collect_stats(loop).snapshot()
