"""CPython's test_asyncio.test_subprocess on conveyor: asyncio.subprocess over conveyor's loop.

CPython runs `SubprocessMixin` once per child-watcher class. conveyor has no child watcher
(each loop watches its own children), so the mixin runs twice here instead: once with the
pidfd strategy and once with the thread-per-child fallback that other platforms use.
"""

import os
import unittest

import asyncio
from test.test_asyncio import utils as test_utils
from test.test_asyncio.test_subprocess import SubprocessMixin

import conveyor


class _ConveyorSubprocessMixin(SubprocessMixin):
    childwatch = "pidfd"

    def setUp(self):
        super().setUp()
        self._saved_childwatch = os.environ.get("CONVEYOR_CHILDWATCH")
        os.environ["CONVEYOR_CHILDWATCH"] = self.childwatch
        self.loop = conveyor.new_event_loop()
        self.set_event_loop(self.loop)

    def tearDown(self):
        super().tearDown()
        if self._saved_childwatch is None:
            os.environ.pop("CONVEYOR_CHILDWATCH", None)
        else:
            os.environ["CONVEYOR_CHILDWATCH"] = self._saved_childwatch


@unittest.skipUnless(hasattr(os, "pidfd_open"), "pidfd_open is Linux-only")
class ConveyorPidfdSubprocessTests(_ConveyorSubprocessMixin, test_utils.TestCase):
    childwatch = "pidfd"


class ConveyorThreadSubprocessTests(_ConveyorSubprocessMixin, test_utils.TestCase):
    childwatch = "thread"


EXCLUDED: dict[str, str] = {}
