"""CPython's test_asyncio.test_sock_lowlevel on conveyor (the sock_* coroutines)."""

import conveyor
from test.test_asyncio import utils as test_utils
from test.test_asyncio.test_sock_lowlevel import BaseSockTestsMixin


class ConveyorSockLowlevelTests(BaseSockTestsMixin, test_utils.TestCase):
    """CPython's per-selector classes build standard loops; this one builds conveyor's."""

    def create_event_loop(self):
        return conveyor.new_event_loop()


EXCLUDED: dict[str, str] = {}
