"""Unix stream sockets: create_unix_connection and create_unix_server.

A path names a socket file; a name with a leading NUL is Linux's abstract namespace, with
no file to manage. A server replaces a stale socket file at its path (`remove_stale_socket`,
which create_datagram_endpoint uses too) and, depending on the Python version, removes its
own file when it closes (see create_unix_server).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
import sys
from typing import Any

from ..contract import LoopInternals
from .common import ProtocolFactory, check_ssl_timeouts, make_transport
from .server import Server

logger = logging.getLogger("asyncio")

#: Whether create_unix_server removes its socket file on close by default: asyncio does
#: from 3.13 (the `cleanup_socket` keyword); 3.11 and 3.12 leave the file.
_UNIX_CLEANUP_DEFAULT = sys.version_info >= (3, 13)


async def create_unix_connection(
        loop: LoopInternals, protocol_factory: ProtocolFactory, path: str | bytes | os.PathLike | None = None,
        *, ssl: Any = None, sock: socket.socket | None = None,
        server_hostname: str | None = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Connect to a Unix stream socket by path (or abstract name, leading NUL) or over `sock`."""
    if ssl:
        if server_hostname is None:
            raise ValueError("you have to pass server_hostname when using ssl")
    else:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        path = os.fspath(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, path)
        except BaseException:
            sock.close()
            raise
    else:
        if sock is None:
            raise ValueError("no path and sock were specified")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.setblocking(False)
    try:
        return await make_transport(loop, sock, protocol_factory, ssl, server_hostname,
                                    ssl_handshake_timeout=ssl_handshake_timeout,
                                    ssl_shutdown_timeout=ssl_shutdown_timeout)
    except BaseException:
        if path is not None:
            sock.close()
        raise


async def create_unix_server(
        loop: LoopInternals, protocol_factory: ProtocolFactory,
        path: str | bytes | os.PathLike | None = None, *, sock: socket.socket | None = None,
        backlog: int = 100, ssl: Any = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None, start_serving: bool = True,
        cleanup_socket: bool | None = None) -> Server:
    """Listen on a Unix stream socket; a stale socket file at `path` is replaced.

    Whether the socket file is removed when the server closes follows the running Python's
    asyncio: from 3.13 it is (for `path=` and for a bound `sock=` alike, unless
    `cleanup_socket=False`); 3.11 and 3.12 leave it, and have no `cleanup_socket` keyword
    (conveyor accepts it there too: an explicit True removes the file on those versions)."""
    if cleanup_socket is None:
        cleanup_socket = _UNIX_CLEANUP_DEFAULT
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    unix_path = None
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        path = os.fspath(path)
        remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
            raise
        except BaseException:
            sock.close()
            raise
    else:
        if sock is None:
            raise ValueError("path was not specified, and no sock specified")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
    if cleanup_socket:
        unix_path = _socket_file(sock)
    sock.setblocking(False)
    server = Server(loop, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout,
                    ssl_shutdown_timeout, unix_path=unix_path)
    if start_serving:
        await server.start_serving()
    return server


def _is_abstract(path: str | bytes) -> bool:
    """An abstract-namespace name (leading NUL) or no name at all: no file to manage."""
    return not path or path[0] in (0, "\x00")


def remove_stale_socket(path: str | bytes) -> None:
    """Remove a socket file an earlier server or endpoint left at `path`, so bind() can
    reuse the path (anything that is not a socket is left for bind() to refuse)."""
    if _is_abstract(path):
        return
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)


def _socket_file(sock: socket.socket) -> tuple[Any, int] | None:
    """(path, inode) of the file `sock` is bound to, so the server removes that file (and
    only that file: not one someone else bound at the same path since) when it closes."""
    path = sock.getsockname()
    if _is_abstract(path):
        return None
    try:
        return path, os.stat(path).st_ino
    except FileNotFoundError:
        return None
