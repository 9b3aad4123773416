"""Name resolution on the executor (filled in by the networking work)."""

from __future__ import annotations


async def getaddrinfo(loop, *args, **kwargs):
    raise NotImplementedError("getaddrinfo is not implemented yet")


async def getnameinfo(loop, *args, **kwargs):
    raise NotImplementedError("getnameinfo is not implemented yet")
