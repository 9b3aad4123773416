"""CPython's test_asyncio.test_sendfile on conveyor (loop.sendfile and sock_sendfile)."""

from test.test_asyncio import utils as test_utils
from test.test_asyncio.test_sendfile import SendfileTestsBase

import conveyor


class ConveyorSendfileTests(SendfileTestsBase, test_utils.TestCase):
    """CPython's per-selector classes build standard loops; this one builds conveyor's."""

    def create_event_loop(self):
        return conveyor.new_event_loop()


EXCLUDED: dict[str, str] = {
    "ConveyorSendfileTests.test_sendfile_force_unsupported_native":
        "replaces the standard loop's private _sendfile_native hook with BaseEventLoop's; "
        "conveyor has no such hook, so the native path it means to disable still runs",
}
