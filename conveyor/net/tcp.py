"""Stream connections and servers: create_connection, create_server, their Unix twins,
connect_accepted_socket, and sendfile.

These are bound on `EventLoop` as methods (see docs/internals.md), so each takes the loop
first. They validate arguments the way asyncio does (same exception types, messages that name
the argument), produce connected non-blocking sockets, and hand them to
`transports.socket.SocketTransport`; with `ssl=` the raw transport carries a
`transports.tls.TLSProtocol` and the application gets that protocol's `app_transport`.

create_connection tries the resolved addresses one after another, or, with
`happy_eyeballs_delay`, races them RFC 8305 style: the next attempt starts when the previous
one fails or the delay passes, whichever is first, and the first connected socket wins.
"""

from __future__ import annotations

import asyncio
import collections.abc
import errno
import io
import itertools
import os
import socket
import stat
import sys
from typing import Any, Callable

from . import dns
from .server import Server
from .transports.socket import SocketTransport

try:
    import ssl as _ssl
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _ssl = None

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

#: Whether create_unix_server removes its socket file on close by default: asyncio does
#: from 3.13 (the `cleanup_socket` keyword); 3.11 and 3.12 leave the file.
_UNIX_CLEANUP_DEFAULT = sys.version_info >= (3, 13)

#: Bytes per read in the sendfile fallback (asyncio's block size).
SENDFILE_FALLBACK_BLOCK = 16384


# --------------------------------------------------------------------- helpers


def _check_ssl_socket(sock: Any) -> None:
    if _ssl is not None and isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _check_ssl_timeouts(ssl: Any, ssl_handshake_timeout: Any, ssl_shutdown_timeout: Any) -> None:
    if ssl_handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")


async def _resolve(loop: Any, address: tuple, family: int, type_: int, proto: int,
                   flags: int) -> list:
    """getaddrinfo for `address`, skipping the executor when it is already numeric."""
    host, port = address[:2]
    info = dns.numeric_address(host, port, family, type_, proto, *address[2:])
    if info is not None:
        return [info]
    return await loop.getaddrinfo(host, port, family=family, type=type_, proto=proto,
                                  flags=flags)


def _interleave(infos: list, first_family_count: int = 1) -> list:
    """Reorder addresses so families alternate (RFC 8305 section 4), keeping their order."""
    by_family: dict[int, list] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    groups = list(by_family.values())
    result: list = []
    if first_family_count > 1:
        result.extend(groups[0][:first_family_count - 1])
        groups[0] = groups[0][first_family_count - 1:]
    for batch in itertools.zip_longest(*groups):
        result.extend(info for info in batch if info is not None)
    return result


async def _wait_writable(loop: Any, fd: int) -> None:
    fut = loop.create_future()
    loop._add_writer(fd, _set_done, fut)
    try:
        await fut
    finally:
        loop._remove_writer(fd)


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def _connect_one(loop: Any, info: tuple, local_infos: list | None,
                       errors: list) -> socket.socket:
    """One attempt of create_connection; failures are appended to `errors` and re-raised.

    A failure's traceback keeps this frame alive, so the frame lets go of `errors` (and of
    its bind errors) on the way out: otherwise each error would be referenced by the list
    that collected it, a reference cycle that outlives the call (asyncio breaks it too)."""
    family, type_, proto, _, address = info
    sock = None
    bind_errors: list | None = None
    try:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        if local_infos is not None:
            bind_errors = []
            for lfamily, _, _, _, laddr in local_infos:
                if lfamily != family:
                    continue
                try:
                    sock.bind(laddr)
                    break
                except OSError as exc:
                    bind_errors.append(OSError(
                        exc.errno, f"error while attempting to bind on address {laddr!r}: "
                                   f"{(exc.strerror or '').lower()}"))
            else:
                if bind_errors:
                    errors.extend(bind_errors[:-1])
                    raise bind_errors[-1]
                raise OSError(f"no matching local address with family={family!r} found")
        await loop.sock_connect(sock, address)
        return sock
    except OSError as exc:
        errors.append(exc)
        if sock is not None:
            sock.close()
        raise
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        errors = bind_errors = None


async def _race(loop: Any, infos: list, local_infos: list | None, delay: float,
                errors: list) -> socket.socket | None:
    """Happy Eyeballs: staggered attempts, first connected socket wins, the rest are closed."""
    remaining = iter(infos)
    pending: set[asyncio.Task] = set()

    def start_next() -> bool:
        info = next(remaining, None)
        if info is None:
            return False
        pending.add(loop.create_task(_connect_one(loop, info, local_infos, errors)))
        return True

    winner = None
    exhausted = not start_next()
    try:
        while pending and winner is None:
            done, _ = await asyncio.wait(pending, timeout=None if exhausted else delay,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                exhausted = not start_next()
                continue
            for task in done:
                pending.discard(task)
                if task.cancelled() or task.exception() is not None:
                    continue
                if winner is None:
                    winner = task.result()
                else:
                    task.result().close()
            if winner is None and not exhausted:
                exhausted = not start_next()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            for result in results:
                if isinstance(result, socket.socket):
                    if winner is None:
                        winner = result
                    else:
                        result.close()
    return winner


def _connection_error(errors: list, all_errors: bool) -> BaseException:
    if all_errors:
        return ExceptionGroup("create_connection failed", errors)
    if len(errors) == 1:
        return errors[0]
    model = str(errors[0])
    if all(str(exc) == model for exc in errors):
        return errors[0]
    return OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in errors)))


async def _make_transport(loop: Any, sock: socket.socket, protocol_factory: ProtocolFactory,
                          ssl: Any, server_hostname: str | None, *, server_side: bool = False,
                          ssl_handshake_timeout: float | None = None,
                          ssl_shutdown_timeout: float | None = None,
                          ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Wrap a connected socket; return once connection_made has run (and TLS is up)."""
    sock.setblocking(False)
    protocol = protocol_factory()
    waiter = loop.create_future()
    if ssl:
        from .transports import tls
        if not hasattr(tls, "TLSProtocol"):
            raise NotImplementedError("TLS transports are not implemented yet")
        sslcontext = None if isinstance(ssl, bool) else ssl
        if sslcontext is None:
            sslcontext = _ssl.create_default_context()
            if server_side:
                raise ValueError("Server side SSL needs a valid SSLContext")
        tls_protocol = tls.TLSProtocol(
            loop, protocol, sslcontext, waiter, server_side=server_side,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        transport = SocketTransport(loop, sock, tls_protocol)
        app_transport = tls_protocol.app_transport
    else:
        transport = SocketTransport(loop, sock, protocol, waiter)
        app_transport = transport
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return app_transport, protocol


# ------------------------------------------------------------------ TCP


async def create_connection(
        loop: Any, protocol_factory: ProtocolFactory, host: str | None = None,
        port: int | str | None = None, *, ssl: Any = None, family: int = 0, proto: int = 0,
        flags: int = 0, sock: socket.socket | None = None, local_addr: tuple | None = None,
        server_hostname: str | None = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None, happy_eyeballs_delay: float | None = None,
        interleave: int | None = None, all_errors: bool = False,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Open a stream connection to host:port (or over `sock`) and return (transport, protocol)."""
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if server_hostname is None and ssl:
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        _check_ssl_socket(sock)
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # RFC 8305 recommends interleaving when racing

    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        infos = await _resolve(loop, (host, port), family, socket.SOCK_STREAM, proto, flags)
        if not infos:
            raise OSError("getaddrinfo() returned empty list")
        local_infos = None
        if local_addr is not None:
            local_infos = await _resolve(loop, local_addr, family, socket.SOCK_STREAM, proto,
                                         flags)
            if not local_infos:
                raise OSError("getaddrinfo() returned empty list")
        if interleave:
            infos = _interleave(infos, interleave)
        errors: list = []
        if happy_eyeballs_delay is None:
            sock = None
            for info in infos:
                try:
                    sock = await _connect_one(loop, info, local_infos, errors)
                    break
                except OSError:
                    continue
        else:
            sock = await _race(loop, infos, local_infos, happy_eyeballs_delay, errors)
        if sock is None:
            try:
                raise _connection_error(errors, all_errors)
            finally:
                errors = []
    else:
        if sock is None:
            raise ValueError("host and port was not specified and no sock specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")

    try:
        return await _make_transport(
            loop, sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
    except BaseException:
        if host is not None or port is not None:
            sock.close()
        raise


def _set_reuse_port(sock: socket.socket) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError("reuse_port not supported by socket module, "
                         "SO_REUSEPORT defined but not implemented.") from None


async def create_server(
        loop: Any, protocol_factory: ProtocolFactory, host: Any = None,
        port: int | str | None = None, *, family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE, sock: socket.socket | None = None, backlog: int = 100,
        ssl: Any = None, reuse_address: bool | None = None, reuse_port: bool | None = None,
        keep_alive: bool | None = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None, start_serving: bool = True) -> Server:
    """Listen on host:port (every address it resolves to; several hosts allowed) or `sock`."""
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        _check_ssl_socket(sock)

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
            _resolve(loop, (h, port), family, socket.SOCK_STREAM, 0, flags) for h in hosts])
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
                    _set_reuse_port(listener)
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
        server._start_serving()
        # One iteration so the listening sockets are registered before we return.
        await asyncio.sleep(0)
    return server


async def connect_accepted_socket(
        loop: Any, protocol_factory: ProtocolFactory, sock: socket.socket, *, ssl: Any = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Wrap a socket accepted elsewhere (server side of TLS when `ssl` is given)."""
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")
    _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    _check_ssl_socket(sock)
    return await _make_transport(loop, sock, protocol_factory, ssl, "", server_side=True,
                                 ssl_handshake_timeout=ssl_handshake_timeout,
                                 ssl_shutdown_timeout=ssl_shutdown_timeout)


# ------------------------------------------------------------------ Unix


async def create_unix_connection(
        loop: Any, protocol_factory: ProtocolFactory, path: str | bytes | os.PathLike | None = None,
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
        _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
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
        return await _make_transport(loop, sock, protocol_factory, ssl, server_hostname,
                                     ssl_handshake_timeout=ssl_handshake_timeout,
                                     ssl_shutdown_timeout=ssl_shutdown_timeout)
    except BaseException:
        if path is not None:
            sock.close()
        raise


async def create_unix_server(
        loop: Any, protocol_factory: ProtocolFactory,
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
    _check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    unix_path = None
    if path is not None:
        if sock is not None:
            raise ValueError("path and sock can not be specified at the same time")
        path = os.fspath(path)
        if not _is_abstract(path):
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                import logging
                logging.getLogger("asyncio").error(
                    "Unable to check or remove stale UNIX socket %r: %r", path, err)
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
        server._start_serving()
        await asyncio.sleep(0)
    return server


def _is_abstract(path: str | bytes) -> bool:
    """An abstract-namespace name (leading NUL) or no name at all: no file to manage."""
    return not path or path[0] in (0, "\x00")


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


# ------------------------------------------------------------------ sendfile


def _check_sendfile_args(file: Any, offset: Any, count: Any) -> None:
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


_TLS_MODULE = __name__.rpartition(".")[0] + ".transports.tls"


def _is_stream_transport(transport: Any) -> bool:
    """Whether the read-and-write fallback applies: a byte stream (TLS), not datagrams/pipes.

    asyncio answers this with a private per-class flag; a transport may declare
    `_sendfile_compatible` itself, and conveyor's TLS transport qualifies by its type.
    """
    if getattr(transport, "_sendfile_compatible", None):
        return True
    return type(transport).__module__ == _TLS_MODULE


async def sendfile(loop: Any, transport: asyncio.WriteTransport, file: Any, offset: int = 0,
                   count: int | None = None, *, fallback: bool = True) -> int:
    """Send a file over a transport: os.sendfile for plain sockets, else read-and-write."""
    if transport.is_closing():
        raise RuntimeError("Transport is closing")
    native = isinstance(transport, SocketTransport)
    if not native and not _is_stream_transport(transport):
        raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
    if not native and not fallback:
        raise RuntimeError(f"fallback is disabled and native sendfile is not supported "
                           f"for transport {transport!r}")
    _check_sendfile_args(file, offset, count)
    if native:
        if transport._sock.type != socket.SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        try:
            return await _sendfile_native(loop, transport, file, offset, count)
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
    return await _sendfile_fallback(loop, transport, file, offset, count)


async def _sendfile_native(loop: Any, transport: SocketTransport, file: Any, offset: int,
                           count: int | None) -> int:
    """Zero-copy: the kernel moves file pages to the socket; we only wait for room."""
    if not hasattr(os, "sendfile"):
        raise asyncio.SendfileNotAvailableError("os.sendfile() is not available")
    try:
        fileno = file.fileno()
    except (AttributeError, io.UnsupportedOperation):
        raise asyncio.SendfileNotAvailableError("not a regular file") from None
    try:
        size = os.fstat(fileno).st_size
    except OSError:
        raise asyncio.SendfileNotAvailableError("not a regular file") from None
    end = min(offset + count, size) if count else size
    if offset >= end:
        return 0
    transport.pause_reading()
    position = offset
    try:
        await transport._make_empty_waiter()
        fd = transport._sock.fileno()
        while position < end:
            try:
                sent = os.sendfile(fd, fileno, position, min(end - position, 1 << 30))
            except (BlockingIOError, InterruptedError):
                await _wait_writable(loop, fd)
                continue
            except OSError as exc:
                if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                    raise ConnectionError("socket is not connected", errno.ENOTCONN) from exc
                if position == offset:
                    raise asyncio.SendfileNotAvailableError("os.sendfile call failed") from exc
                raise
            if sent == 0:
                break  # the file shrank under us
            position += sent
        return position - offset
    finally:
        if position > offset:
            file.seek(position)
        transport._reset_empty_waiter()
        transport.resume_reading()


class _DrainingProtocol(asyncio.Protocol):
    """Stands in for the app's protocol during the sendfile fallback to see pause/resume."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._app = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        self._was_paused = bool(getattr(transport, "_protocol_paused", False))
        self._lost: BaseException | None = None
        self._ready: asyncio.Future | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        transport.pause_reading()
        transport.set_protocol(self)
        if self._was_paused:
            self._ready = loop.create_future()

    async def drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._ready is not None:
            await self._ready

    def pause_writing(self) -> None:
        if self._ready is None:
            self._ready = self._loop.create_future()

    def resume_writing(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("data arrived while reading was paused for sendfile")

    def eof_received(self) -> bool:
        raise RuntimeError("EOF arrived while reading was paused for sendfile")

    def connection_lost(self, exc: BaseException | None) -> None:
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_exception(ConnectionError("Connection is closed by peer") if exc is None
                                else exc)
        self._app.connection_lost(exc)

    def restore(self) -> None:
        self._transport.set_protocol(self._app)
        if self._resume_reading:
            self._transport.resume_reading()
        if self._ready is not None:
            self._ready.cancel()
        if self._was_paused and not getattr(self._transport, "_protocol_paused", True):
            self._app.resume_writing()


async def _sendfile_fallback(loop: Any, transport: Any, file: Any, offset: int,
                             count: int | None) -> int:
    """Read blocks on the executor and write them, respecting the transport's flow control."""
    if offset:
        file.seek(offset)
    block = min(count, SENDFILE_FALLBACK_BLOCK) if count else SENDFILE_FALLBACK_BLOCK
    buffer = bytearray(block)
    total = 0
    proxy = _DrainingProtocol(transport)
    try:
        while True:
            if count:
                block = min(count - total, block)
                if block <= 0:
                    return total
            view = memoryview(buffer)[:block]
            read = await loop.run_in_executor(None, file.readinto, view)
            if not read:
                return total
            await proxy.drain()
            transport.write(bytes(view[:read]))
            total += read
    finally:
        if total:
            file.seek(offset + total)
        proxy.restore()
