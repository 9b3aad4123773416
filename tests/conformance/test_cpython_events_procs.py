"""CPython's test_events on conveyor: the pipe, pty, subprocess and signal tests.

`EventLoopTestsMixin` and `SubprocessTestsMixin` are run against a conveyor loop; ONLY keeps
the tests of this area (the mixin's socket, server and core tests belong to other files).
"""

import unittest

from test.test_asyncio import utils as test_utils
from test.test_asyncio.test_events import EventLoopTestsMixin, SubprocessTestsMixin

import conveyor


class ConveyorProcsEventLoopTests(EventLoopTestsMixin, SubprocessTestsMixin,
                                  test_utils.TestCase):

    def create_event_loop(self):
        return conveyor.new_event_loop()


def _procs_tests() -> set[str]:
    names = {name for name in dir(SubprocessTestsMixin) if name.startswith("test_")}
    names |= {name for name in dir(EventLoopTestsMixin) if name.startswith("test_") and any(
        word in name for word in ("signal", "pipe", "pty"))}
    return names


ONLY = {"ConveyorProcsEventLoopTests": _procs_tests()}

EXCLUDED: dict[str, str] = {}
