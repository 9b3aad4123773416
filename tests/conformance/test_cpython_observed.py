"""CPython's task, future and event-loop tests on conveyor with every observer switched on.

The same CPython test classes as test_cpython_tasks.py (and a core slice of test_events),
run while each conveyor loop a test creates carries the tracer, the statistics collector,
the spawn tracker and a watchdog. Instruments must only watch: if any of them changed the
order callbacks run in, swallowed an exception, kept a task alive or leaked a handle, these
tests would fail here and pass in test_cpython_tasks.py.
"""

import pytest

from conveyor.core import on_new_loop
from conveyor.observe.stats import LoopStats
from conveyor.observe.taskdump import TaskTree
from conveyor.observe.trace import Tracer
from conveyor.observe.watchdog import Watchdog
from conveyor.observe import hooks
from test.test_asyncio.test_tasks import (  # noqa: F401 - collected by pytest
    CTask_CFuture_Tests,
    CoroutineGatherTests,
    FutureGatherTests,
    GenericTaskTests,
    RunCoroutineThreadsafeTests,
    SleepTests,
)

EXCLUDED: dict[str, str] = {
    "CoroutineGatherTests.test_issue46672":
        "patches asyncio.BaseEventLoop.call_exception_handler, a method of the standard "
        "loop's class, which conveyor does not inherit",
}


@pytest.fixture(autouse=True)
def _every_observer():
    """Instrument each loop the test creates with the tracer, stats, spawn tracking and a
    watchdog (with a threshold no test reaches, so it only runs its thread and hooks)."""
    tracer = Tracer(max_events=20_000)
    dog = Watchdog(30.0)
    loops = []

    extras = []

    def instrument(loop):
        loops.append(loop)
        tracer.attach(loop)
        for extra in (LoopStats(loop), TaskTree()):
            hooks.add_instrument(extra, loop)
            extras.append((extra, loop))
        dog.attach(loop)

    stop_observing = on_new_loop(instrument)
    dog.start()
    try:
        yield
    finally:
        stop_observing()
        dog.stop()
        tracer.stop()
        for extra, loop in extras:
            assert hooks.remove_instrument(extra, loop), f"{extra!r} was removed for raising"
    # The instruments really were there: every loop the test created was recorded, and none
    # of them was removed for raising.
    for loop in loops:
        assert loop._hooks is None  # all detached again
    if loops:
        assert tracer.to_chrome()["traceEvents"] or all(l.is_closed() for l in loops)
    assert not dog.stalls
