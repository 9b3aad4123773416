"""Datagram endpoints and transports (filled in by the networking work)."""

from __future__ import annotations


async def create_datagram_endpoint(loop, *args, **kwargs):
    raise NotImplementedError("create_datagram_endpoint is not implemented yet")
