"""conveyor.fs: async file I/O on a bounded per-loop thread pool (see file.py's docstring)."""

from .file import *  # noqa: F401,F403
from .file import __all__  # noqa: F401
