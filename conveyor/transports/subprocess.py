"""Subprocess transports (filled in by the subprocess work)."""

from __future__ import annotations


async def subprocess_exec(loop, *args, **kwargs):
    raise NotImplementedError("subprocess_exec is not implemented yet")


async def subprocess_shell(loop, *args, **kwargs):
    raise NotImplementedError("subprocess_shell is not implemented yet")

