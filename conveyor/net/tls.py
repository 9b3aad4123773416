"""start_tls: upgrade an open connection to TLS.

The TLS machinery is `transports.tls.TLSProtocol`; this is the loop method that puts one on
a transport that is already connected (a STARTTLS exchange, TLS inside TLS).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from ..transports.socket import SocketTransport
from ..transports.tls import TLSProtocol


def _upgradable(transport: Any) -> bool:
    """Stream transports over sockets can carry TLS; pipes, datagrams and TLS itself cannot.

    conveyor's socket transport qualifies by type; any other transport (stock asyncio's,
    uvloop's) by the ``_start_tls_compatible`` flag asyncio uses for the same question.
    """
    return isinstance(transport, SocketTransport) or bool(
        getattr(transport, "_start_tls_compatible", False))


async def start_tls(loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport,
                    protocol: asyncio.BaseProtocol, sslcontext: ssl.SSLContext, *,
                    server_side: bool = False, server_hostname: str | None = None,
                    ssl_handshake_timeout: float | None = None,
                    ssl_shutdown_timeout: float | None = None) -> asyncio.Transport:
    """Upgrade an open connection to TLS and return the new, plaintext transport.

    The old transport keeps carrying the bytes; the caller must stop using it. The
    application protocol is not told connection_made again: it already has a connection.
    """
    if not isinstance(sslcontext, ssl.SSLContext):
        raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                        f"got {sslcontext!r}")
    if not _upgradable(transport):
        raise TypeError(f"transport {transport!r} is not supported by start_tls()")
    waiter = loop.create_future()
    tls = TLSProtocol(loop, protocol, sslcontext, waiter, server_side, server_hostname,
                      ssl_handshake_timeout=ssl_handshake_timeout,
                      ssl_shutdown_timeout=ssl_shutdown_timeout, call_connection_made=False)
    # Stop reading first so no bytes reach the TLS protocol before connection_made does.
    transport.pause_reading()  # type: ignore[attr-defined]
    transport.set_protocol(tls)
    made = loop.call_soon(tls.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)  # type: ignore[attr-defined]
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return tls.app_transport
