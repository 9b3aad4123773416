"""CPython's test_asyncio.test_threads on conveyor: asyncio.to_thread over the default executor."""

from test.test_asyncio.test_threads import ToThreadTests  # noqa: F401 - collected by pytest

EXCLUDED: dict[str, str] = {}
