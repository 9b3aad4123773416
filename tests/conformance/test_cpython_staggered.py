"""CPython's test_asyncio.test_staggered on conveyor (Python 3.13+): `staggered_race`, the
helper behind asyncio's Happy Eyeballs, run as tasks on conveyor's loop. It is asyncio code,
not loop code, but it leans on the loop's ordering of call_soon, timers and cancellation."""

import sys

import pytest

if sys.version_info < (3, 13):
    pytest.skip("CPython's test_staggered is new in Python 3.13", allow_module_level=True)

from test.test_asyncio.test_staggered import StaggeredTests  # noqa: E402,F401 - collected

EXCLUDED: dict[str, str] = {}
