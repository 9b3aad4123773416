"""The UDP parts of CPython's test_asyncio.test_events on conveyor (datagram endpoints)."""

import conveyor
from test.test_asyncio import utils as test_utils
from test.test_asyncio.test_events import UnixEventLoopTestsMixin


class ConveyorDatagramEventLoopTests(UnixEventLoopTestsMixin, test_utils.TestCase):
    """CPython's per-selector classes build standard loops; this one builds conveyor's."""

    def create_event_loop(self):
        return conveyor.new_event_loop()


# The mixin holds every event-loop test; this file runs the datagram ones (the rest belong to
# the other test_cpython_events_* files).
ONLY = {"ConveyorDatagramEventLoopTests": {
    "test_create_datagram_endpoint",
    "test_create_datagram_endpoint_ipv6",
    "test_create_datagram_endpoint_sock",
}}

EXCLUDED: dict[str, str] = {}
