"""The core suite: the loop's own machinery, with no I/O.

Four workloads, each one of the loop's inner paths pushed hard:

- ``callbacks``: the ready queue. Many ``call_soon`` chains, each callback scheduling the
  next, so the figure is the cost of one enqueue plus one dispatch.
- ``timers``: the timer heap. Rounds of 100k ``call_later`` with random delays in a short
  window, half of them cancelled before they are due (lazy cancellation and compaction get
  exercised), interleaved with loop iterations so the heap holds live and dead entries.
- ``tasks``: task switching. Thousands of tasks each ``await asyncio.sleep(0)`` many times:
  one Task step, one yield to the loop and one ``call_soon`` per operation.
- ``gather``: fan-out and fan-in. Rounds of ``asyncio.gather`` over 2.5k coroutines, each
  awaiting a few times: a task created, stepped, finished and collected per operation.

Sizes aim at 0.3-2 s per run under stock asyncio on a small machine. Random choices come
from a seeded generator and are drawn before the clock starts, so every loop gets the same
work and only the loop is timed.
"""

from __future__ import annotations

import asyncio
import random
import time

from .registry import Workload

__all__ = ["WORKLOADS", "callbacks", "timers", "tasks", "gather"]


async def callbacks(chains: int = 100, total: int = 1_000_000) -> int:
    """call_soon chains: each callback reschedules itself until its share is done."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    per_chain = total // chains
    running = chains

    def step(left: int) -> None:
        nonlocal running
        if left:
            loop.call_soon(step, left - 1)
            return
        running -= 1
        if not running:
            done.set_result(None)

    for _ in range(chains):
        loop.call_soon(step, per_chain - 1)
    await done
    return per_chain * chains


async def timers(count: int = 100_000, rounds: int = 3, window: float = 0.005,
                 batch: int = 1000, seed: int = 20240601) -> tuple[int, float]:
    """call_later with random delays, half cancelled; one op per timer scheduled.

    Each round schedules ``count`` timers, ``batch`` at a time with one loop iteration in
    between, so the heap holds due, pending and cancelled entries at once, as in a server
    with many timeouts; the round ends when every uncancelled timer has fired. Rounds
    (rather than one bigger round) keep the issue's 100k-timer shape while taking long
    enough to measure. The window is short so waiting for the last timer adds little idle
    time to a run.
    """
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    plans = []
    for _ in range(rounds):
        delays = [rng.random() * window for _ in range(count)]
        doomed = [False] * count
        for index in rng.sample(range(count), count // 2):
            doomed[index] = True
        plans.append((delays, doomed))
    expected = count - count // 2
    call_later = loop.call_later
    fired = 0
    done: asyncio.Future[None] = loop.create_future()

    def fire() -> None:
        nonlocal fired
        fired += 1
        if fired == expected:
            done.set_result(None)

    start = time.perf_counter()
    for delays, doomed in plans:
        fired = 0
        done = loop.create_future()
        for low in range(0, count, batch):
            handles = [call_later(delay, fire) for delay in delays[low:low + batch]]
            for handle, cancel in zip(handles, doomed[low:low + batch]):
                if cancel:
                    handle.cancel()
            await asyncio.sleep(0)
        if expected:
            await done
        if fired != expected:
            raise AssertionError(f"{fired} timers fired, expected {expected}")
    return count * rounds, time.perf_counter() - start


async def tasks(count: int = 10_000, low: int = 20, high: int = 100,
                seed: int = 20240601) -> tuple[int, float]:
    """Tasks looping on ``await asyncio.sleep(0)``; one op per switch."""
    rng = random.Random(seed)
    rounds = [rng.randint(low, high) for _ in range(count)]
    sleep = asyncio.sleep

    async def worker(n: int) -> None:
        for _ in range(n):
            await sleep(0)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in rounds:
            group.create_task(worker(n))
    return sum(rounds), time.perf_counter() - start


async def gather(count: int = 2_500, rounds: int = 40, awaits: int = 3) -> tuple[int, float]:
    """asyncio.gather over thousands of tasks that await a little; one op per task gathered.

    Each round gathers ``count`` fresh coroutines; each awaits ``sleep(0)`` ``awaits``
    times, so a round costs ``count`` task creations, ``count * (awaits + 1)`` task steps
    and the gather's own done callbacks, as a server fanning a request out to many backends.
    """
    sleep = asyncio.sleep
    gather_ = asyncio.gather

    async def worker(index: int) -> int:
        for _ in range(awaits):
            await sleep(0)
        return index

    start = time.perf_counter()
    for _ in range(rounds):
        results = await gather_(*[worker(index) for index in range(count)])
        if len(results) != count or results[-1] != count - 1:
            raise AssertionError(f"gather returned {len(results)} results, expected {count}")
    return count * rounds, time.perf_counter() - start


WORKLOADS: list[Workload] = [
    Workload("callbacks", callbacks, quick={"total": 50_000}),
    Workload("timers", timers, quick={"count": 5_000, "rounds": 1}),
    Workload("tasks", tasks, quick={"count": 500}),
    Workload("gather", gather, quick={"rounds": 2}),
]
