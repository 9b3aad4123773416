"""create_server, and the Server object it and create_unix_server return.

A `Server` owns listening sockets and accepts on them: each readable listening socket is
drained of up to `backlog` connections per wake-up, and every accepted connection becomes a
`SocketTransport` (or, with TLS, a handshake task) at once, with no task per plain connection.

When accept fails for lack of file descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM),
the listening socket stops being polled for `ACCEPT_RETRY_DELAY` seconds and the failure is
reported once per episode (until the backlog is drained again): polling it at once again
would spin the CPU on a connection that cannot be taken until something else closes.

`wait_closed()` follows the running Python's asyncio: on 3.12 and later it waits until the
server is closed and every connection it accepted is gone; on 3.11 it returns at once if
the server was already closed.
"""

from __future__ import annotations

import asyncio
import collections.abc
import errno
import itertools
import logging
import os
import socket
import sys
from typing import Any, Callable

from ..contract import LoopInternals
from ..transports.socket_view import TransportSocket
from ..transports.socket import SocketTransport
from .common import (ProtocolFactory, check_ssl_socket, check_ssl_timeouts, set_reuse_port,
                     socket_transport)
from .dns import resolve

logger = logging.getLogger("asyncio")

#: Seconds a listening socket rests after accept ran out of fds or memory (asyncio's value).
ACCEPT_RETRY_DELAY = 1.0
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_WAIT_FOR_CONNECTIONS = sys.version_info >= (3, 12)


class Server(asyncio.AbstractServer):
    """Listening sockets, the connections accepted on them, and their lifecycle."""

    def __init__(self, loop: LoopInternals, sockets: list[socket.socket],
                 protocol_factory: Callable[[], asyncio.BaseProtocol], ssl_context: Any,
                 backlog: int, ssl_handshake_timeout: float | None = None,
                 ssl_shutdown_timeout: float | None = None,
                 unix_path: tuple[str, int] | None = None) -> None:
        self._loop = loop
        self._sockets: list[socket.socket] | None = sockets
        self._protocol_factory = protocol_factory
        self._ssl_context = ssl_context
        self._backlog = backlog
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        #: How many accepted connections are not released yet. The connections themselves
        #: are found through the loop's fd records, which hold them (`_clients`).
        self._nclients = 0
        self._waiters: list[asyncio.Future] | None = []
        self._serving = False
        self._serving_forever_fut: asyncio.Future | None = None
        self._exhausted_logged = False
        self._retry_handles: dict[int, asyncio.TimerHandle] = {}
        #: (path, inode) of a Unix socket file this server removes when it closes.
        self._unix_path = unix_path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # ------------------------------------------------------------ connection tracking

    def _attach(self, transport: Any) -> None:
        """`transport` (a connection accepted here) has started: it claims its fd with
        keep_alive, so the loop's fd records hold it until `_detach`."""
        self._nclients += 1

    def _detach(self, transport: Any) -> None:
        self._nclients -= 1
        if not self._nclients and self._sockets is None:
            self._wakeup()

    def _clients(self) -> list[Any]:
        """The connections accepted here and not released yet."""
        return [transport for transport in self._loop._fd_owners()
                if getattr(transport, "_server", None) is self]

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ public API

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[TransportSocket, ...]:
        """Views of the listening sockets that refuse what would break the loop (accept,
        close, blocking mode), as asyncio's are; new views on every call, as there."""
        if self._sockets is None:
            return ()
        return tuple(TransportSocket(sock) for sock in self._sockets)

    def close(self) -> None:
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        for sock in sockets:
            self._loop._remove_reader(sock.fileno())
        for handle in self._retry_handles.values():
            handle.cancel()
        self._retry_handles.clear()
        self._serving = False
        for sock in sockets:
            sock.close()
        self._remove_unix_path()
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if not self._nclients:
            self._wakeup()

    def close_clients(self) -> None:
        for transport in self._clients():
            transport.close()

    def abort_clients(self) -> None:
        for transport in self._clients():
            transport.abort()

    def _remove_unix_path(self) -> None:
        """Delete our socket file, unless someone else has bound a new one there since."""
        if self._unix_path is None:
            return
        path, inode = self._unix_path
        self._unix_path = None
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.error("Unable to clean up listening UNIX socket %r: %r", path, exc)

    async def start_serving(self) -> None:
        self._start_serving()
        # One iteration so that the listening sockets are registered with the poller.
        await asyncio.sleep(0)

    def _start_serving(self) -> None:
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets or ():
            sock.listen(self._backlog)
            self._loop._add_reader(sock.fileno(), self._accept_ready, sock)

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self) -> None:
        if self._waiters is None:
            return
        if not _WAIT_FOR_CONNECTIONS and self._sockets is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    # ------------------------------------------------------------ accepting

    def _accept_ready(self, sock: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                # Drained: whatever exhaustion came before is over, so the next one is news.
                self._exhausted_logged = False
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._back_off(sock, exc)
                    return
                raise
            conn.setblocking(False)
            self._connection_accepted(conn, addr)

    def _back_off(self, sock: socket.socket, exc: OSError) -> None:
        if not self._exhausted_logged:
            self._exhausted_logged = True
            self._loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": exc, "socket": sock})
        fd = sock.fileno()
        self._loop._remove_reader(fd)
        self._retry_handles[fd] = self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting,
                                                        sock)

    def _resume_accepting(self, sock: socket.socket) -> None:
        self._retry_handles.pop(sock.fileno(), None)
        if self._serving and self._sockets is not None:
            self._loop._add_reader(sock.fileno(), self._accept_ready, sock)

    def _connection_accepted(self, conn: socket.socket, addr: Any) -> None:
        if self._ssl_context is not None:
            self._loop.create_task(self._accept_tls(conn, addr))
            return
        try:
            protocol = self._protocol_factory()
            SocketTransport(self._loop, conn, protocol, None, addr, self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            conn.close()
            self._loop.call_exception_handler({
                "message": "Error on transport creation for incoming connection",
                "exception": exc, "socket": conn})

    async def _accept_tls(self, conn: socket.socket, addr: Any) -> None:
        transport = None
        try:
            protocol = self._protocol_factory()
            waiter = self._loop.create_future()
            transport, _ = socket_transport(
                self._loop, conn, protocol, waiter, self._ssl_context, server_side=True,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
                ssl_shutdown_timeout=self._ssl_shutdown_timeout, peername=addr,
                server=self)
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is not None:
                transport.close()
            else:
                conn.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            # Failed handshakes are routine on a public TLS port (scanners, clients that
            # reject our certificate): reported in debug mode only, as asyncio does.
            if not self._loop.get_debug():
                return
            self._loop.call_exception_handler({
                "message": "Error on transport creation for incoming connection",
                "exception": exc, "socket": conn})


async def create_server(
        loop: LoopInternals, protocol_factory: ProtocolFactory, host: Any = None,
        port: int | str | None = None, *, family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE, sock: socket.socket | None = None, backlog: int = 100,
        ssl: Any = None, reuse_address: bool | None = None, reuse_port: bool | None = None,
        keep_alive: bool | None = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None, start_serving: bool = True) -> Server:
    """Listen on host:port (every address it resolves to; several hosts allowed) or `sock`."""
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        check_ssl_socket(sock)

    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        if reuse_address is None:
            reuse_address = os.name == "posix" and sys.platform != "cygwin"
        if host == "":
            hosts: list = [None]
        elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
            hosts = [host]
        else:
            hosts = list(host)
        resolved = await asyncio.gather(*[
            resolve(loop, (h, port), family=family, type=socket.SOCK_STREAM, flags=flags)
            for h in hosts])
        infos = set(itertools.chain.from_iterable(resolved))
        sockets: list[socket.socket] = []
        completed = False
        try:
            for af, socktype, proto, _, sa in infos:
                try:
                    listener = socket.socket(af, socktype, proto)
                except OSError:
                    continue  # a family this host cannot make sockets for
                sockets.append(listener)
                if reuse_address:
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                if reuse_port:
                    set_reuse_port(listener)
                if keep_alive:
                    listener.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                if af == getattr(socket, "AF_INET6", None) and hasattr(socket, "IPPROTO_IPV6"):
                    # Without this an IPv6 socket would also take the IPv4 port and the
                    # IPv4 socket of the same server would fail to bind.
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                try:
                    listener.bind(sa)
                except OSError as err:
                    raise OSError(err.errno, "error while attempting to bind on address "
                                  f"{sa!r}: {(err.strerror or '').lower()}") from None
            completed = True
        finally:
            if not completed:
                for listener in sockets:
                    listener.close()
    else:
        if sock is None:
            raise ValueError("Neither host/port nor sock were specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        sockets = [sock]

    for listener in sockets:
        listener.setblocking(False)
    server = Server(loop, sockets, protocol_factory, ssl, backlog, ssl_handshake_timeout,
                    ssl_shutdown_timeout)
    if start_serving:
        await server.start_serving()
    return server
