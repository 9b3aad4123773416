"""Helpers for testing code that runs on conveyor (and conveyor itself).

`VirtualClockLoop`: a conveyor loop with a virtual clock driven by a generator, with the same
contract as CPython's `test.test_asyncio.utils.TestLoop`, so timer logic is tested without
real waiting.
"""

from .virtual_clock import VirtualClockLoop

__all__ = ["VirtualClockLoop"]
