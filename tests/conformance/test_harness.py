"""The conformance harness really puts conveyor under CPython's tests.

If one of these fails, the CPython test files in this directory may be testing the standard
loop and passing for the wrong reason.
"""

import asyncio
import os
import unittest

from test.test_asyncio import utils as test_utils

import conveyor
from conveyor.testing import VirtualClockLoop

#: Declaring EXCLUDED gives these tests the conftest's conveyor policy and its standard-loop
#: guard, exactly as the CPython test files get them (they are not counted as CPython tests).
EXCLUDED: dict[str, str] = {}


def _expected_poller() -> str:
    from conveyor import poller
    return os.environ.get("CONVEYOR_POLLER") or poller.available()[0]


def test_new_event_loop_is_conveyor_on_the_requested_poller():
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is conveyor.EventLoop
        assert loop._poller.name == _expected_poller()
    finally:
        loop.close()


def test_new_test_loop_is_a_virtual_clock_conveyor_loop():
    class Probe(test_utils.TestCase):
        def runTest(self):
            pass

    case = Probe()
    loop = case.new_test_loop()
    try:
        assert isinstance(loop, VirtualClockLoop)
        assert isinstance(loop, conveyor.EventLoop)
    finally:
        case.doCleanups()
        assert loop.is_closed()


def test_isolated_asyncio_test_case_runs_on_conveyor():
    seen = []

    class Probe(unittest.IsolatedAsyncioTestCase):
        async def test_loop(self):
            seen.append(asyncio.get_running_loop())

    result = unittest.TestResult()
    Probe("test_loop").run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    assert len(seen) == 1 and isinstance(seen[0], conveyor.EventLoop)


def test_asyncio_run_runs_on_conveyor():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main()) is conveyor.EventLoop
