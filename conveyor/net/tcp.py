"""TCP connections: create_connection and connect_accepted_socket.

create_connection resolves host:port (`dns.resolve`), then tries the addresses one after
another, or, with `happy_eyeballs_delay`, races them RFC 8305 style: the next attempt starts
when the previous one fails or the delay passes, whichever is first, and the first connected
socket wins. Arguments are checked as asyncio checks them (same exception types, messages
that name the argument); the connected socket becomes its transport in
`common.make_transport` (with TLS when `ssl=` asks for it).
"""

from __future__ import annotations

import asyncio
import errno
import io
import itertools
import os
import socket
from typing import Any

from ..transports.socket import SocketTransport
from ..transports.tls import SSLTransport
from .common import ProtocolFactory, check_ssl_socket, check_ssl_timeouts, make_transport
from .dns import resolve

#: Bytes per read in the sendfile fallback (asyncio's block size).
SENDFILE_FALLBACK_BLOCK = 16384


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
    check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        check_ssl_socket(sock)
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # RFC 8305 recommends interleaving when racing

    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        infos = await resolve(loop, (host, port), family=family, type=socket.SOCK_STREAM,
                              proto=proto, flags=flags)
        local_infos = None
        if local_addr is not None:
            local_infos = await resolve(loop, local_addr, family=family,
                                        type=socket.SOCK_STREAM, proto=proto, flags=flags)
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
        return await make_transport(
            loop, sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
    except BaseException:
        if host is not None or port is not None:
            sock.close()
        raise


async def connect_accepted_socket(
        loop: Any, protocol_factory: ProtocolFactory, sock: socket.socket, *, ssl: Any = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Wrap a socket accepted elsewhere (server side of TLS when `ssl` is given)."""
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")
    check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    check_ssl_socket(sock)
    return await make_transport(loop, sock, protocol_factory, ssl, "", server_side=True,
                                ssl_handshake_timeout=ssl_handshake_timeout,
                                ssl_shutdown_timeout=ssl_shutdown_timeout)


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


def _is_stream_transport(transport: Any) -> bool:
    """Whether the read-and-write fallback applies: a byte stream (TLS), not datagrams/pipes.

    asyncio answers this with a private per-class flag; a transport may declare
    `_sendfile_compatible` itself, and conveyor's TLS transport qualifies by its type.
    """
    if getattr(transport, "_sendfile_compatible", None):
        return True
    return isinstance(transport, SSLTransport)


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
