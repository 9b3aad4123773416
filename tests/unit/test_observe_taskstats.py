"""Per-task figures (TaskStats) and the lost-waker check, on conveyor; the lost-waker check
also on stock asyncio, which it must judge the same way."""

from __future__ import annotations

import asyncio
import time

import pytest

import conveyor
from conveyor.observe.taskstats import TaskStats, is_lost, lost_wakers, where_suspended

from support import run

KEEP: dict = {}


async def spinner(n):
    for _ in range(n):
        await asyncio.sleep(0)  # SPIN


async def sleeper():
    await asyncio.sleep(3600)


async def unreferenced():
    await asyncio.get_running_loop().create_future()


async def held():
    KEEP["future"] = asyncio.get_running_loop().create_future()
    await KEEP["future"]


async def inner_local():
    future = asyncio.get_running_loop().create_future()
    return await future


async def outer():
    await inner_local()


async def waits_event(event):
    await event.wait()


def test_counts_steps_self_wakes_and_slow_steps(loop):
    stats = TaskStats(slow_step=0.05)

    async def slow():
        time.sleep(0.06)
        await asyncio.sleep(0.001)

    async def main():
        conveyor.add_instrument(stats)
        spin = asyncio.create_task(spinner(30))
        blocking = asyncio.create_task(slow())
        await asyncio.gather(spin, blocking)
        conveyor.remove_instrument(stats)
        return spin, blocking

    spin, blocking = run(loop, main())
    spun = stats.records[spin]
    assert spun.steps == 31
    assert spun.self_wakes == 30  # every step but the last yielded bare
    assert spun.self_wake_at.endswith(f"test_observe_taskstats.py:{spinner.__code__.co_firstlineno + 2}")
    slowed = stats.records[blocking]
    assert slowed.steps == 2 and slowed.self_wakes == 0
    assert slowed.slow_steps == 1 and slowed.max_step >= 0.06
    assert slowed.max_step_at.endswith(f":{slow.__code__.co_firstlineno + 2}")
    assert slowed.busy >= slowed.max_step
    assert loop._hooks is None


@pytest.mark.parametrize("make_loop", [asyncio.new_event_loop, conveyor.new_event_loop],
                         ids=["asyncio", "conveyor"])
def test_lost_waker_judged_alike_on_both_loops(make_loop):
    loop = make_loop()
    try:
        async def main():
            event = asyncio.Event()
            tasks = {name: asyncio.create_task(coro, name=name) for name, coro in [
                ("unreferenced", unreferenced()), ("outer", outer()), ("held", held()),
                ("sleeper", sleeper()), ("event", waits_event(event))]}
            await asyncio.sleep(0.01)
            verdicts = {name: is_lost(task) for name, task in tasks.items()}
            where = where_suspended(tasks["sleeper"])
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            return verdicts, where

        verdicts, where = run(loop, main())
    finally:
        loop.close()
    assert verdicts == {"unreferenced": True, "outer": True, "held": False,
                        "sleeper": False, "event": False}
    # The line in this file, not asyncio's own sleep().
    assert where.endswith(f"test_observe_taskstats.py:{sleeper.__code__.co_firstlineno + 1}")


def test_lost_wakers_waits_for_the_idle_time_and_caches(loop):
    stats = TaskStats()

    async def main():
        conveyor.add_instrument(stats)
        task = asyncio.create_task(unreferenced())
        await asyncio.sleep(0.01)
        cache: dict = {}
        since = time.monotonic()
        early = lost_wakers([task], stats, after=60, cache=cache, since=since)
        late = lost_wakers([task], stats, after=0.005, cache=cache, since=since)
        assert len(cache) == 1
        task.cancel()
        conveyor.remove_instrument(stats)
        return early, late, task

    early, late, task = run(loop, main())
    assert early == [] and late == [task]
