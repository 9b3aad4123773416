"""The wake-up path: call_soon_threadsafe must always interrupt a loop asleep in the kernel.

The loop here has only a slow guard timer (every 3 s), so a lost wake-up leaves the callback
unrun for far longer than the 1 s each round allows: the miss is recorded, and the guard timer
(which needs no wake-up) then stops the loop so the test fails instead of hanging.
"""

from __future__ import annotations

import os
import threading

import pytest

import conveyor
from conveyor.waker import Waker


@pytest.mark.timeout(120)
def test_every_threadsafe_call_wakes_an_idle_loop():
    loop = conveyor.new_event_loop()
    ran = threading.Event()
    stalls = []
    rounds = 20_000

    def producer():
        try:
            for i in range(rounds):
                ran.clear()
                loop.call_soon_threadsafe(ran.set)
                if not ran.wait(1):
                    stalls.append(i)
                    return
        finally:
            finished.set()
            loop.call_soon_threadsafe(loop.stop)

    def guard():
        if finished.is_set():
            loop.stop()
        else:
            loop.call_later(3, guard)

    finished = threading.Event()
    loop.call_later(3, guard)
    thread = threading.Thread(target=producer)
    thread.start()
    try:
        loop.run_forever()
    finally:
        thread.join(10)
        loop.close()
    assert stalls == [], f"loop slept through a wake-up at round {stalls[0]}"


@pytest.mark.timeout(60)
def test_many_threads_waking_at_once_lose_nothing():
    loop = conveyor.new_event_loop()
    per_thread, nthreads = 2_000, 8
    counted = []
    done = loop.create_future()

    def count():
        counted.append(1)
        if len(counted) == per_thread * nthreads and not done.done():
            done.set_result(None)

    def producer():
        for _ in range(per_thread):
            loop.call_soon_threadsafe(count)

    threads = [threading.Thread(target=producer) for _ in range(nthreads)]
    for t in threads:
        t.start()
    try:
        loop.run_until_complete(asyncio_wait(done, 30))
    finally:
        for t in threads:
            t.join(10)
        loop.close()
    assert len(counted) == per_thread * nthreads


async def asyncio_wait(fut, timeout):
    import asyncio
    await asyncio.wait_for(fut, timeout)


def test_waker_coalesces_and_drains():
    waker = Waker()
    fd = waker.fileno()
    try:
        for _ in range(100):
            waker.wake()
        os.set_blocking(fd, False)
        waker.drain()
        # Everything written was drained and the next wake() writes again.
        with pytest.raises(BlockingIOError):
            os.read(fd, 8)
        waker.wake()
        waker.drain()
    finally:
        waker.close()
    waker.wake()  # after close: a no-op, never a write to a reused fd number
