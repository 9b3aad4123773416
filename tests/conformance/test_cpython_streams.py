"""CPython's test_asyncio.test_streams on conveyor (asyncio streams over conveyor transports).

StreamTests builds its loop with `asyncio.new_event_loop()`, which the conformance conftest
routes to conveyor through the installed policy.
"""

from test.test_asyncio.test_streams import StreamTests  # noqa: F401

EXCLUDED: dict[str, str] = {}
