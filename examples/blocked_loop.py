"""One callback that never yields stalls everything; one that yields keeps the loop alive.

A heartbeat task ticks every 50 ms. Then the same amount of CPU work runs twice:

- **blocking**: in one piece. While it runs the loop cannot do anything else, so the
  heartbeat stops for the whole time;
- **yielding**: in slices, with ``await asyncio.sleep(0)`` between them. Each yield hands
  control back to the loop, which runs the heartbeat and anything else that is ready.

    python examples/blocked_loop.py [--work 1.0] [--no-watchdog]

The work is bounded (``--work`` seconds), so the blocking version ends too.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import conveyor

TICK = 0.05      # heartbeat period, seconds
SLICE = 0.01     # how much work the yielding version does between yields, seconds


def crunch(seconds: float) -> None:
    """Busy CPU work for ``seconds`` (a stand-in for parsing, hashing, a slow sync call)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def blocking_work(seconds: float) -> None:
    crunch(seconds)  # never yields: nothing else runs until it returns


async def yielding_work(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        crunch(SLICE)
        await asyncio.sleep(0)  # let the loop run whatever else is ready


async def heartbeat(ticks: list[float]) -> None:
    while True:
        ticks.append(time.perf_counter())
        await asyncio.sleep(TICK)


async def measure(label: str, work: float, run_work) -> None:
    ticks: list[float] = []
    beat = asyncio.create_task(heartbeat(ticks))
    await asyncio.sleep(TICK * 1.5)  # the heartbeat is going
    start = time.perf_counter()
    await run_work(work)
    end = time.perf_counter()
    await asyncio.sleep(0)  # one more turn: a tick that was overdue gets its chance
    beat.cancel()
    during = [t for t in ticks if start <= t < end]
    around = [t for t in ticks if t < start][-1:] + during + [t for t in ticks if t >= end][:1]
    gap = max((b - a for a, b in zip(around, around[1:])), default=end - start)
    print(f"{label}: {len(during)} heartbeat ticks during {end - start:.2f} s of work "
          f"(longest gap between ticks: {gap:.2f} s)")


async def main(work: float) -> None:
    await measure("blocking", work, blocking_work)
    await measure("yielding", work, yielding_work)


def run(work: float, use_watchdog: bool) -> None:
    # ---- the watchdog -------------------------------------------------------------------
    # conveyor.watchdog(threshold=...) watches the loop from another thread and logs (to
    # stderr) a loop that has not come back to poll within the threshold, with the stack
    # that is blocking it. It is turned on here when this conveyor has it.
    watchdog = getattr(conveyor, "watchdog", None)
    if watchdog is None or not use_watchdog:
        conveyor.run(main(work))
        return
    with watchdog(threshold=0.2) as dog:
        conveyor.run(main(work))
    stalls = list(getattr(dog, "stalls", ()))
    print(f"watchdog: {len(stalls)} stall(s) over 0.2 s reported (details on stderr)")
    # --------------------------------------------------------------------------------------


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=float, default=1.0, metavar="SECONDS",
                        help="CPU work done by each version (default 1.0)")
    parser.add_argument("--no-watchdog", action="store_true",
                        help="do not turn conveyor's watchdog on")
    ns = parser.parse_args()
    run(ns.work, not ns.no_watchdog)
