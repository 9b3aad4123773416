"""CPython's test_asyncio.test_locks on conveyor: Lock, Event, Condition, Semaphore, Barrier."""

from test.test_asyncio.test_locks import (  # noqa: F401 - collected by pytest
    BarrierTests,
    ConditionTests,
    EventTests,
    LockTests,
    SemaphoreTests,
)

EXCLUDED: dict[str, str] = {}
