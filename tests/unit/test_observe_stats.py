"""Loop statistics: the counts add up and the gauges match the loop's state."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

import conveyor
from conveyor.observe.stats import Histogram, LoopStats


def test_callbacks_counted_equal_callbacks_run(loop):
    stats = conveyor.collect_stats(loop)
    ran = 0

    def tick(left):
        nonlocal ran
        ran += 1
        if left:
            loop.call_soon(tick, left - 1)
        else:
            loop.stop()

    for _ in range(10):
        loop.call_soon(tick, 99)
    loop.run_forever()
    snap = stats.snapshot()
    # The loop stops after the iteration in which the first chain ends.
    assert snap.callbacks == ran
    assert snap.task_steps == 0
    assert snap.queue_delay["count"] == ran
    assert snap.iterations == 100
    assert snap.poll_time >= 0 and snap.callback_time >= 0
    assert snap.poll_time + snap.callback_time <= snap.elapsed
    assert 0.0 <= snap.utilization <= 1.0


def test_task_steps_and_lifecycle_counts(loop):
    stats = conveyor.collect_stats(loop)

    async def child(n):
        for _ in range(n):
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(asyncio.create_task(child(3)) for _ in range(5)))

    loop.run_until_complete(main())
    snap = stats.snapshot()
    assert snap.tasks_created == 6  # main + 5 children
    assert snap.tasks_done == 6
    # Each child: 4 steps (start, 3 wake-ups). main: start + wake-up after gather.
    assert snap.task_steps == 5 * 4 + 2
    assert snap.tasks_alive == 0


def test_timer_lag_and_slowest_callback_source(loop):
    stats = conveyor.collect_stats(loop, keep_slowest=3)

    def blocker():
        time.sleep(0.03)  # the slow one

    loop.call_later(0.001, blocker)
    loop.call_later(0.002, lambda: None)  # runs late: the blocker holds the loop
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    snap = stats.snapshot()
    assert snap.timer_lag["count"] == 3
    assert snap.timer_lag["max"] >= 0.02
    slowest = snap.slowest[0]
    assert slowest.callback.endswith("blocker")
    assert slowest.took >= 0.03
    assert slowest.source.startswith(__file__ + ":")
    assert len(snap.slowest) == 3
    assert "blocker" in str(snap)


def test_gauges_match_the_loop(loop):
    stats = conveyor.collect_stats(loop)
    a, b = socket.socketpair()
    try:
        loop.add_reader(a.fileno(), lambda: None)
        timers = [loop.call_later(100, lambda: None) for _ in range(4)]
        timers[0].cancel()

        async def main():
            sleeper = asyncio.create_task(asyncio.sleep(100))
            await asyncio.sleep(0)
            snap = stats.snapshot()
            sleeper.cancel()
            return snap

        snap = loop.run_until_complete(main())
        # The waker's fd and ours.
        assert snap.active_fds == 2
        # Three of ours plus the sleeping task's timer.
        assert snap.pending_timers == 4
        assert snap.tasks_alive == 2
        for timer in timers:
            timer.cancel()
        loop.remove_reader(a.fileno())
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        a.close()
        b.close()


def test_loop_stats_installs_once_and_reset(loop):
    async def main():
        first = conveyor.loop_stats()
        collector = conveyor.collect_stats()
        assert conveyor.collect_stats() is collector
        # The step that installed it ran on the fast path; the next one is counted when
        # it ends, so it shows after one more switch.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert collector.snapshot().callbacks == 1
        collector.reset()
        assert collector.snapshot().callbacks == 0
        collector.close()
        assert loop._hooks is None
        return first

    first = loop.run_until_complete(main())
    assert first.callbacks == 0


def test_histogram_percentiles():
    hist = Histogram()
    for value in [0.00001] * 98 + [0.004, 3.0]:
        hist.add(value)
    assert hist.count == 100
    assert hist.percentile(50) == 1e-5
    assert hist.percentile(99) == 5e-3
    assert hist.percentile(100) == 5.0
    assert hist.max == 3.0
    assert hist.as_dict()["buckets"]["<=1e-05s"] == 98


def test_bad_arguments(loop):
    with pytest.raises(ValueError, match="keep_slowest"):
        conveyor.collect_stats(loop, keep_slowest=-1)
    assert isinstance(conveyor.collect_stats(loop), LoopStats)
