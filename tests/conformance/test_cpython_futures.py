"""CPython's test_asyncio.test_futures and test_futures2 on conveyor (C and Python futures)."""

from test.test_asyncio.test_futures import (  # noqa: F401 - collected by pytest
    CFutureDoneCallbackTests,
    CFutureInheritanceTests,
    CFutureTests,
    CSubFutureDoneCallbackTests,
    CSubFutureTests,
    DuckTests,
    PyFutureDoneCallbackTests,
    PyFutureInheritanceTests,
    PyFutureTests,
)
from test.test_asyncio.test_futures2 import (  # noqa: F401 - collected by pytest
    CFutureTests as CFutureTests2,
    FutureReprTests as FutureReprTests2,
    PyFutureTests as PyFutureTests2,
)

EXCLUDED: dict[str, str] = {}
