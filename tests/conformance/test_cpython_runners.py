"""CPython's test_asyncio.test_runners on conveyor: asyncio.run and asyncio.Runner.

CPython's `BaseTest.new_loop` builds a standard `BaseEventLoop` with a mocked selector and
hands it to asyncio.run through a test policy. Here `new_loop` builds a conveyor loop instead
(a real one: nothing mocked), keeping the one hook the tests check, that the runner shut the
loop's async generators down before closing it.
"""

from test.test_asyncio import test_runners

import conveyor


class _ConveyorLoops:
    def new_loop(self):
        loop = conveyor.new_event_loop()
        loop.shutdown_ag_run = False
        shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens_recorded():
            loop.shutdown_ag_run = True
            await shutdown_asyncgens()

        loop.shutdown_asyncgens = shutdown_asyncgens_recorded
        return loop


class ConveyorRunTests(_ConveyorLoops, test_runners.RunTests):
    pass


class ConveyorRunnerTests(_ConveyorLoops, test_runners.RunnerTests):
    pass


EXCLUDED: dict[str, str] = {
    "ConveyorRunTests.test_asyncio_run_debug":
        "patches asyncio.coroutines._is_debug_mode, the private function through which the "
        "standard loop reads -X dev and PYTHONASYNCIODEBUG; conveyor reads the same flags "
        "itself (tests/unit/test_loop_core.py checks them)",
    # 3.13+ only:
    "ConveyorRunTests.test_loop_factory_default_event_loop":
        "runs asyncio.run(loop_factory=asyncio.EventLoop) and checks that the loop is the "
        "standard SelectorEventLoop: a test of the standard loop, not of the runner",
}
