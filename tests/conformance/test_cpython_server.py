"""CPython's test_asyncio.test_server on conveyor (Server: start_serving, serve_forever, ...)."""

from test.test_asyncio.test_server import SelectorStartServerTests

import conveyor


class ConveyorStartServerTests(SelectorStartServerTests):
    """CPython's SelectorStartServerTests (its Unix test included) with a conveyor loop."""

    def new_loop(self):
        return conveyor.new_event_loop()


del SelectorStartServerTests  # collected once, as the conveyor class

EXCLUDED: dict[str, str] = {}
