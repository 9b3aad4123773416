"""Make conveyor the loop of everything in this process: the switch behind
`CONVEYOR_ECOSYSTEM=conveyor` (see conveyor/testing/ecosystem.py).

Its own module, apart from the pytest plugin, because the ecosystem venv's `.pth` line runs it
at interpreter start-up, before pytest: pytest must import its plugins itself (to rewrite their
asserts) and warns about a plugin module that is already imported.
"""

from __future__ import annotations

_activated = False


def _conveyor_factory(use_subprocess: bool = False):
    import conveyor
    return conveyor.new_event_loop


def activate() -> None:
    """Make conveyor the loop of everything in this process (idempotent)."""
    global _activated
    if _activated:
        return
    _activated = True
    import conveyor
    conveyor.install()
    try:  # uvicorn resolves Config(loop=...) through these module functions at run time
        import uvicorn.loops.asyncio
        import uvicorn.loops.auto
    except ImportError:
        pass
    else:
        uvicorn.loops.asyncio.asyncio_loop_factory = _conveyor_factory
        uvicorn.loops.auto.auto_loop_factory = _conveyor_factory
