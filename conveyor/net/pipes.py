"""connect_read_pipe / connect_write_pipe: a pipe's file object and its transport.

The transports (transports/pipe.py) check the file (a pipe, socket or character device),
make its fd non-blocking and own the file object from then on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..contract import LoopInternals
from ..transports.pipe import ReadPipeTransport, WritePipeTransport

logger = logging.getLogger("asyncio")


async def connect_read_pipe(loop: LoopInternals, protocol_factory, pipe: Any
                            ) -> tuple[ReadPipeTransport, asyncio.BaseProtocol]:
    """Read from `pipe` (a file object) through a protocol made by `protocol_factory`."""
    return await _connect(loop, ReadPipeTransport, protocol_factory, pipe)


async def connect_write_pipe(loop: LoopInternals, protocol_factory, pipe: Any
                             ) -> tuple[WritePipeTransport, asyncio.BaseProtocol]:
    """Write to `pipe` (a file object) through a protocol made by `protocol_factory`."""
    return await _connect(loop, WritePipeTransport, protocol_factory, pipe)


async def _connect(loop: LoopInternals, transport_class: type, protocol_factory, pipe: Any
                   ) -> tuple[Any, asyncio.BaseProtocol]:
    protocol = protocol_factory()
    waiter = loop.create_future()
    transport = transport_class(loop, pipe, protocol, waiter)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    if loop.get_debug():
        logger.debug("%s %r connected: (%r, %r)", transport_class.__name__, pipe.fileno(),
                     transport, protocol)
    return transport, protocol
