"""CPython's test_asyncio.test_buffered_proto on conveyor (BufferedProtocol over TCP)."""

from test.test_asyncio.test_buffered_proto import BufferedProtocolSelectorTests

import conveyor


class ConveyorBufferedProtocolTests(BufferedProtocolSelectorTests):

    def new_loop(self):
        return conveyor.new_event_loop()


del BufferedProtocolSelectorTests  # collected once, as the conveyor class

EXCLUDED: dict[str, str] = {}
