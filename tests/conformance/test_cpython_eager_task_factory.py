"""CPython's test_asyncio.test_eager_task_factory on conveyor (Python 3.12+): eager task
factories installed with loop.set_task_factory, C and Python tasks."""

import sys

import pytest

if sys.version_info < (3, 12):
    pytest.skip("eager task factories (and this CPython test module) are new in Python 3.12",
                allow_module_level=True)

from test.test_asyncio.test_eager_task_factory import (  # noqa: E402,F401 - collected
    CEagerTaskFactoryLoopTests,
    EagerCTaskTests,
    EagerPyTaskTests,
    EagerTests,
    NonEagerCTaskTests,
    NonEagerPyTaskTests,
    NonEagerTests,
    PyEagerTaskFactoryLoopTests,
)

EXCLUDED: dict[str, str] = {}
