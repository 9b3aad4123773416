"""What several connection factories share, so each rule is written once.

- the checks of the `ssl=`-related arguments and of a given socket (asyncio's exception
  types and messages);
- `set_reuse_port`, for create_server and create_datagram_endpoint;
- `socket_transport` / `make_transport`: a connected stream socket becomes a
  `SocketTransport`, and with `ssl=` a `TLSProtocol` rides on it and the application gets
  the TLS transport (`ssl=True` means the default client context: the one builder of it is
  `TLSProtocol`'s, given no context).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Callable

from ..contract import LoopInternals
from ..transports.socket import SocketTransport
from ..transports.tls import TLSProtocol
from .sockets import _SSLSocket

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def check_ssl_socket(sock: Any) -> None:
    """An `ssl.SSLSocket` encrypts inside the socket object: the loop would see plaintext."""
    if isinstance(sock, _SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def check_ssl_timeouts(ssl: Any, ssl_handshake_timeout: Any, ssl_shutdown_timeout: Any) -> None:
    if ssl_handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


def set_reuse_port(sock: socket.socket) -> None:
    """SO_REUSEPORT, or asyncio's ValueError where the platform lacks it."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError("reuse_port not supported by socket module, "
                         "SO_REUSEPORT defined but not implemented.") from None


def socket_transport(loop: LoopInternals, sock: socket.socket, protocol: asyncio.BaseProtocol,
                     waiter: asyncio.Future | None, ssl: Any, *, server_side: bool = False,
                     server_hostname: str | None = None,
                     ssl_handshake_timeout: float | None = None,
                     ssl_shutdown_timeout: float | None = None, peername: Any = None,
                     server: Any = None) -> tuple[SocketTransport, asyncio.Transport]:
    """(the socket's transport, the transport the application gets): the same one without
    `ssl`; with it, the TLS transport of the `TLSProtocol` the socket transport carries.

    `waiter` gets None once the application may use its transport (after connection_made,
    and with TLS after the handshake), or the exception that prevented it."""
    if not ssl:
        transport = SocketTransport(loop, sock, protocol, waiter, peername, server)
        return transport, transport
    tls = TLSProtocol(loop, protocol, None if isinstance(ssl, bool) else ssl, waiter,
                      server_side=server_side, server_hostname=server_hostname,
                      ssl_handshake_timeout=ssl_handshake_timeout,
                      ssl_shutdown_timeout=ssl_shutdown_timeout)
    return SocketTransport(loop, sock, tls, None, peername, server), tls.app_transport


async def make_transport(loop: LoopInternals, sock: socket.socket, protocol_factory: ProtocolFactory,
                         ssl: Any, server_hostname: str | None, *, server_side: bool = False,
                         ssl_handshake_timeout: float | None = None,
                         ssl_shutdown_timeout: float | None = None,
                         ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Wrap a connected socket; return once connection_made has run (and TLS is up).

    If that fails or the caller is cancelled meanwhile, the transport is closed (and the
    socket with it); a failure before the transport exists leaves the socket to the caller.
    """
    sock.setblocking(False)
    protocol = protocol_factory()
    waiter = loop.create_future()
    transport, app_transport = socket_transport(
        loop, sock, protocol, waiter, ssl, server_side=server_side,
        server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return app_transport, protocol
