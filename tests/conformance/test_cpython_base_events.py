"""CPython's test_asyncio.test_base_events on conveyor: the loop-core tests of
`BaseEventLoopTests` (scheduling, run/stop, exception handler, debug, executors, async
generators) and `RunningLoopTests`.

CPython's `BaseEventLoopTests.setUp` builds the standard `BaseEventLoop` with a mocked
selector; here it builds a conveyor loop. Tests that reach into the standard loop's private
attributes or patch its module are excluded below, each with what it touches.
"""

from test.test_asyncio import test_base_events
from test.test_asyncio.test_base_events import RunningLoopTests  # noqa: F401 - collected

import conveyor


class ConveyorBaseEventLoopTests(test_base_events.BaseEventLoopTests):
    def setUp(self):
        # Skip BaseEventLoopTests.setUp (it builds the standard loop), keep TestCase's.
        super(test_base_events.BaseEventLoopTests, self).setUp()
        self.loop = conveyor.new_event_loop()
        self.set_event_loop(self.loop)


_C = "ConveyorBaseEventLoopTests."
_BUILDS_STANDARD_LOOP = ("subclasses or builds asyncio.BaseEventLoop itself: a test of the "
                         "standard loop's class")
_SCHEDULED = ("reads or fills the standard loop's private timer list loop._scheduled (conveyor's "
              "timer heap is covered in tests/unit/test_loop_core.py)")
_SELECTOR = ("drives the standard loop through a mock of its private loop._selector "
             "(conveyor's poller backends are the real thing here)")

EXCLUDED: dict[str, str] = {
    _C + "test__add_callback_cancelled_handle": "calls the standard loop's private _add_callback",
    _C + "test__add_callback_handle": "calls the standard loop's private _add_callback",
    _C + "test__run_once": _SCHEDULED,
    _C + "test__run_once_schedule_handle": _SCHEDULED,
    _C + "test_call_later": _SCHEDULED,
    _C + "test__run_once_cancelled_event_cleanup":
        "reads the standard loop's private _timer_cancelled_count and _scheduled (conveyor's "
        "heap compaction is covered in tests/unit/test_loop_core.py)",
    _C + "test_not_implemented":
        "checks that the standard loop's private _make_*_transport hooks raise "
        "NotImplementedError; conveyor has no such template methods",
    _C + "test_run_forever_pre_stopped": _SELECTOR,
    _C + "test_single_selecter_event_callback_after_stopping": _SELECTOR,
    _C + "test_check_thread": _BUILDS_STANDARD_LOOP + " (a second loop in the thread)",
    _C + "test_create_task": _BUILDS_STANDARD_LOOP,
    _C + "test_default_exc_handler_broken": _BUILDS_STANDARD_LOOP,
    # 3.13+ only:
    _C + "test_custom_run_forever_integration":
        "drives the standard loop's private _run_forever_setup/_run_forever_cleanup hooks "
        "(3.13), which conveyor's run_forever does not split out",
}
