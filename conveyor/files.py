"""The first name of `conveyor.fs`, kept so ``from conveyor.files import ...`` still works.

New code imports `conveyor.fs` (or the helpers on `conveyor` itself).
"""

from .fs import *  # noqa: F401,F403
from .fs import __all__  # noqa: F401
