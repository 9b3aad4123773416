"""conveyor.testing.VirtualClockLoop keeps the contract of CPython's TestLoop."""

import asyncio
import os

import pytest

import conveyor
from conveyor.testing import VirtualClockLoop


def test_generator_sees_each_deadline_and_moves_the_clock():
    seen = []

    def gen():
        when = yield
        seen.append(when)
        when = yield 10.0
        seen.append(when)
        yield 5.0
        yield 0  # one more than the test needs: close() must notice

    loop = VirtualClockLoop(gen)
    try:
        assert isinstance(loop, conveyor.EventLoop)
        assert loop.time() == 0

        async def main():
            await asyncio.sleep(10)
            assert loop.time() == 10
            await asyncio.sleep(5)
            return loop.time()

        assert loop.run_until_complete(main()) == 15
        assert seen == [10, 15]
    finally:
        with pytest.raises(AssertionError, match="not finished"):
            loop.close()
    assert loop.is_closed()


def test_close_accepts_an_exhausted_generator_and_closes_fds():
    before = set(os.listdir("/proc/self/fd"))

    def gen():
        yield
        yield 1.0

    loop = VirtualClockLoop(gen)
    loop.run_until_complete(asyncio.sleep(1))
    assert loop.time() == 1.0
    loop.close()
    loop.close()
    assert set(os.listdir("/proc/self/fd")) == before


def test_advance_time_and_no_generator():
    loop = VirtualClockLoop()
    try:
        fired = []
        loop.call_later(3, fired.append, "late")
        loop.advance_time(3)
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert fired == ["late"]
    finally:
        loop.close()


def test_threads_still_wake_a_virtual_clock_loop():
    loop = VirtualClockLoop()
    try:
        assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2])) == 3
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
