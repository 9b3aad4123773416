"""Pipe transports (filled in by the pipes work)."""

from __future__ import annotations


async def connect_read_pipe(loop, *args, **kwargs):
    raise NotImplementedError("connect_read_pipe is not implemented yet")


async def connect_write_pipe(loop, *args, **kwargs):
    raise NotImplementedError("connect_write_pipe is not implemented yet")

