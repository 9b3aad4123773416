"""CPython's test_asyncio.test_pep492 on conveyor: async with / async for / await on locks,
streams and coroutines.

CPython's `BaseTest.setUp` builds a standard `BaseEventLoop` with a mocked selector; here the
loop is a real conveyor loop instead.
"""

from test.test_asyncio import test_pep492

import conveyor


class _ConveyorLoop:
    def setUp(self):
        # Skip BaseTest.setUp (it builds the standard loop), keep test_utils.TestCase's.
        super(test_pep492.BaseTest, self).setUp()
        self.loop = conveyor.new_event_loop()
        self.set_event_loop(self.loop)


class ConveyorLockTests(_ConveyorLoop, test_pep492.LockTests):
    pass


class ConveyorStreamReaderTests(_ConveyorLoop, test_pep492.StreamReaderTests):
    pass


class ConveyorCoroutineTests(_ConveyorLoop, test_pep492.CoroutineTests):
    pass


EXCLUDED: dict[str, str] = {}
