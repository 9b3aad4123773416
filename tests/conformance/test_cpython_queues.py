"""CPython's test_asyncio.test_queues on conveyor."""

import sys

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

if sys.version_info >= (3, 13):  # Queue.shutdown() is new in 3.13
    from test.test_asyncio.test_queues import (  # noqa: F401 - collected by pytest
        LifoQueueShutdownTests,
        PriorityQueueShutdownTests,
        QueueShutdownTests,
    )

EXCLUDED: dict[str, str] = {}
