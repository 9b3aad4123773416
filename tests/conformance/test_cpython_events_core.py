"""CPython's test_events on conveyor: the loop core (callbacks, timers, readers and writers,
threads, run/stop/close) and get_event_loop / get_running_loop with a conveyor loop running.

`EventLoopTestsMixin` holds every event-loop test; ONLY keeps the core ones listed here. The
socket, server, datagram, pipe, subprocess and signal tests of the same mixin run from their
own files (test_cpython_events_net.py, _udp.py, _procs.py), each with its own subclass.
"""

import asyncio

from test.test_asyncio import test_events
from test.test_asyncio import utils as test_utils
from test.test_asyncio.test_events import EventLoopTestsMixin

import conveyor


class ConveyorCoreEventLoopTests(EventLoopTestsMixin, test_utils.TestCase):
    """CPython's per-selector classes build standard loops; this one builds conveyor's."""

    def create_event_loop(self):
        return conveyor.new_event_loop()


class _DefaultPolicyIsConveyors:
    """Two of these tests install `asyncio.DefaultEventLoopPolicy()` by name to get "the
    default loop"; here the default policy is conveyor's, so they check conveyor's loop."""

    def setUp(self):
        self._saved_default_policy = asyncio.DefaultEventLoopPolicy
        asyncio.DefaultEventLoopPolicy = conveyor.EventLoopPolicy
        super().setUp()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            asyncio.DefaultEventLoopPolicy = self._saved_default_policy


class ConveyorPyGetEventLoopTests(_DefaultPolicyIsConveyors, test_events.TestPyGetEventLoop):
    pass


class ConveyorCGetEventLoopTests(_DefaultPolicyIsConveyors, test_events.TestCGetEventLoop):
    pass


ONLY = {"ConveyorCoreEventLoopTests": {
    "test_run_until_complete_nesting",
    "test_run_until_complete",
    "test_run_until_complete_stopped",
    "test_call_later",
    "test_call_soon",
    "test_call_soon_threadsafe",
    "test_call_soon_threadsafe_same_thread",
    "test_run_in_executor",
    "test_run_in_executor_cancel",
    "test_reader_callback",
    "test_writer_callback",
    "test_prompt_cancellation",
    "test_timeout_rounding",
    "test_remove_fds_after_closing",
    "test_add_fds_after_closing",
    "test_close_running_event_loop",
    "test_close",
}}

EXCLUDED: dict[str, str] = {
    "ConveyorCoreEventLoopTests.test_prompt_cancellation":
        "ends by calling loop._stop_serving(), a private method of the standard loop "
        "(the prompt cancellation of sock_recv itself is covered in tests/unit/test_loop_core.py)",
    "ConveyorCoreEventLoopTests.test_timeout_rounding":
        "reads the standard loop's private _selector attribute while asserting (the bounded "
        "number of iterations for sub-millisecond sleeps is covered in "
        "tests/unit/test_loop_core.py)",
}
