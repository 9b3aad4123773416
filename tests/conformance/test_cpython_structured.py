"""CPython's test_taskgroups, test_timeouts, test_waitfor and test_context on conveyor."""

import sys

from test.test_asyncio.test_context import DecimalContextTest  # noqa: F401
from test.test_asyncio.test_taskgroups import TestTaskGroup  # noqa: F401
from test.test_asyncio.test_timeouts import TimeoutTests  # noqa: F401
from test.test_asyncio.test_waitfor import AsyncioWaitForTest  # noqa: F401

if sys.version_info >= (3, 12):  # wait_for(shield(...)) cases, added with 3.12's wait_for
    from test.test_asyncio.test_waitfor import WaitForShieldTests  # noqa: F401

EXCLUDED: dict[str, str] = {}
