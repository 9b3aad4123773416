"""CPython's test_asyncio.test_tasks on conveyor: tasks, gather, wait, sleep, shield, as_completed,
run_coroutine_threadsafe. Tests that use `self.new_test_loop()` run on
conveyor.testing.VirtualClockLoop (see conftest.py)."""

from test.test_asyncio.test_tasks import (  # noqa: F401 - collected by pytest
    CCurrentLoopTests,
    CIntrospectionTests,
    CompatibilityTests,
    CoroutineGatherTests,
    CTask_CFuture_SubclassTests,
    CTask_CFuture_Tests,
    CTask_Future_Tests,
    CTask_PyFuture_Tests,
    CTaskSubclass_PyFuture_Tests,
    FutureGatherTests,
    GenericTaskTests,
    PyCurrentLoopTests,
    PyIntrospectionTests,
    PyTask_CFuture_Tests,
    PyTask_CFutureSubclass_Tests,
    PyTask_PyFuture_SubclassTests,
    PyTask_PyFuture_Tests,
    RunCoroutineThreadsafeTests,
    SleepTests,
)

EXCLUDED: dict[str, str] = {
    "CoroutineGatherTests.test_issue46672":
        "patches asyncio.BaseEventLoop.call_exception_handler, a method of the standard "
        "loop's class, which conveyor does not inherit",
}
