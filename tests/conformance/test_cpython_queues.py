"""CPython's test_asyncio.test_queues on conveyor."""

from test.test_asyncio.test_queues import (  # noqa: F401 - collected by pytest
    LifoQueueJoinTests,
    LifoQueueTests,
    PriorityQueueJoinTests,
    PriorityQueueTests,
    QueueBasicTests,
    QueueGetTests,
    QueueJoinTests,
    QueuePutTests,
)

EXCLUDED: dict[str, str] = {}
