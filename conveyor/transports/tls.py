"""TLS over ssl.MemoryBIO (filled in by the TLS work)."""

from __future__ import annotations


async def start_tls(loop, *args, **kwargs):
    raise NotImplementedError("start_tls is not implemented yet")

