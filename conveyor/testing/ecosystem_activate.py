"""Make conveyor the loop of everything in this process: the switch behind
`CONVEYOR_ECOSYSTEM=conveyor` (see conveyor/testing/ecosystem.py).

Its own module, apart from the pytest plugin, because the ecosystem venv's `.pth` line runs it
at interpreter start-up, before pytest: pytest must import its plugins itself (to rewrite their
asserts) and warns about a plugin module that is already imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_activated = False


def _conveyor_factory(use_subprocess: bool = False):
    import conveyor
    return conveyor.new_event_loop


def _patch_uvicorn_asyncio(module) -> None:
    module.asyncio_loop_factory = _conveyor_factory


def _patch_uvicorn_auto(module) -> None:
    module.auto_loop_factory = _conveyor_factory


#: Modules whose loop choice is replaced, and how. uvicorn resolves Config(loop="auto" |
#: "asyncio") through these module functions each time a server runs.
_PATCHES = {
    "uvicorn.loops.asyncio": _patch_uvicorn_asyncio,
    "uvicorn.loops.auto": _patch_uvicorn_auto,
}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Applies a patch right after its module is first imported.

    Importing the libraries up front instead would import them before pytest does, and
    pytest refuses to rewrite the asserts of a plugin (anyio's) that is already imported.
    """

    def find_spec(self, name, path, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


def activate() -> None:
    """Make conveyor the loop of everything in this process (idempotent)."""
    global _activated
    if _activated:
        return
    _activated = True
    import conveyor
    conveyor.install()
    for name, patch in _PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchOnImport())
