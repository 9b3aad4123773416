"""sendfile: a file's bytes to a socket (`loop.sock_sendfile`) or to a transport
(`loop.sendfile`), by one implementation.

Both try the zero-copy way first: `os.sendfile` hands the file's pages to the socket in the
kernel, and the loop only waits for room in the socket's buffer. A transport's socket takes
that way too: its reading paused and its write buffer empty, it goes through
`loop.sock_sendfile`, as the standard loop's does. Where the kernel cannot (no os.sendfile,
a file object without a descriptor, a descriptor pair os.sendfile refuses before the first
byte), `asyncio.SendfileNotAvailableError` is raised; with `fallback=True` the file is then
read in blocks on the executor and each block sent the ordinary way: `loop.sock_sendall`
for a socket, the transport's `write` for a transport (TLS, or one that declares asyncio's
`_sendfile_compatible`), waiting while its buffer is above the high-water mark.

Siblings are called through the loop (`loop.sock_sendfile`, `loop.sock_sendall`,
`loop.run_in_executor`), so a program or test that replaces one of them on a loop is obeyed
here too, as with asyncio.

What follows the standard loop (tests/functional/test_sendfile_one.py runs the same cases
on both loops):
- arguments: a text-mode file is a ValueError, so is a non-stream socket; `count` must be a
  positive int and `offset` a non-negative int (TypeError for the wrong type, ValueError
  for the wrong value), with asyncio's messages;
- `count=None` sends to the end of the file; a file that fstat reports empty (which a pipe
  or a socket is, too) sends nothing. With a count, a descriptor os.sendfile cannot read
  from falls back;
- any os.sendfile error before the first byte means "not available" (the fallback then
  meets the real error, if it is one); after the first byte, ENOTCONN is a ConnectionError
  and anything else is raised as it is;
- the file position ends just after the last byte sent, after an error or a cancellation
  too; the fallback starts from `offset` only when it is not 0 (from the current position
  otherwise), as asyncio's does.

One fallback block size, `FALLBACK_BLOCK`: asyncio uses 256 KiB for sock_sendfile and
16 KiB for transports. Each block costs a round trip through the executor, and that trip
dominates small blocks: 64 MiB from a BytesIO over a socketpair went at 68 MB/s in 16 KiB
blocks, 198 MB/s in 64 KiB and 306 MB/s in 256 KiB (2-core machine). The buffer lives only
as long as the call.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import socket
from typing import Any, Awaitable, Callable

from ..contract import LoopInternals
from ..transports.socket import SocketTransport
from ..transports.tls import SSLTransport
from .sockets import _WOULD_BLOCK, _check_socket, _wait_writable

#: Bytes read per executor round trip in the fallback (asyncio's sock_sendfile block).
FALLBACK_BLOCK = 256 * 1024
#: Largest count handed to one os.sendfile() call (Linux caps a call near 2 GiB anyway).
_NATIVE_BLOCK = 2 ** 30


def _check_args(file: Any, offset: Any, count: Any,
                sock_type: int = socket.SOCK_STREAM) -> None:
    """asyncio's checks, in its order, with its exception types and messages."""
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if sock_type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


# ------------------------------------------------------------------------------ sockets

async def sock_sendfile(loop: LoopInternals, sock: socket.socket, file: Any, offset: int = 0,
                        count: int | None = None, *, fallback: bool = True) -> int:
    """Send `file` (from `offset`, `count` bytes or to its end) over `sock`; bytes sent."""
    _check_socket(loop, sock)
    _check_args(file, offset, count, sock.type)
    loop._ensure_fd_no_transport(sock.fileno())
    try:
        return await _send_native(loop, sock, file, offset, count)
    except asyncio.SendfileNotAvailableError:
        if not fallback:
            raise
    return await _send_blocks(loop, file, offset, count,
                              lambda block: loop.sock_sendall(sock, block))


async def _send_native(loop: LoopInternals, sock: socket.socket, file: Any, offset: int,
                       count: int | None) -> int:
    """os.sendfile until `count` bytes or the end of the file; the loop waits for room."""
    if not hasattr(os, "sendfile"):
        raise asyncio.SendfileNotAvailableError("os.sendfile() is not available")
    try:
        in_fd = file.fileno()
    except (AttributeError, io.UnsupportedOperation):
        raise asyncio.SendfileNotAvailableError("not a regular file") from None
    try:
        size = os.fstat(in_fd).st_size
    except OSError:
        raise asyncio.SendfileNotAvailableError("not a regular file") from None
    if count is None and not size:
        return 0
    out_fd = sock.fileno()
    position = offset
    try:
        while count is None or position - offset < count:
            want = _NATIVE_BLOCK if count is None else min(count - (position - offset),
                                                           _NATIVE_BLOCK)
            try:
                sent = os.sendfile(out_fd, in_fd, position, want)
            except _WOULD_BLOCK:
                await _wait_writable(loop, sock, _set_done)
                continue
            except OSError as exc:
                if position == offset:
                    raise asyncio.SendfileNotAvailableError("os.sendfile call failed") from exc
                if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                    raise ConnectionError("socket is not connected", errno.ENOTCONN) from exc
                raise
            if not sent:
                break  # the end of the file
            position += sent
        return position - offset
    finally:
        if position > offset:
            file.seek(position)


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def _send_blocks(loop: LoopInternals, file: Any, offset: int, count: int | None,
                       send: Callable[[memoryview], Awaitable[Any]]) -> int:
    """The fallback: read blocks on the executor and `await send(block)` each one."""
    if offset:
        file.seek(offset)
    block = min(count, FALLBACK_BLOCK) if count else FALLBACK_BLOCK
    buffer = bytearray(block)
    total = 0
    try:
        while True:
            want = block if count is None else min(block, count - total)
            if want <= 0:
                return total
            view = memoryview(buffer)[:want]
            read = await loop.run_in_executor(None, file.readinto, view)
            if not read:
                return total
            await send(view[:read])
            total += read
    finally:
        if total and hasattr(file, "seek"):
            file.seek(offset + total)


# --------------------------------------------------------------------------- transports

def _takes_fallback(transport: Any) -> bool:
    """Whether a transport that is not a socket's can carry the fallback's writes: a byte
    stream (TLS), not datagrams or pipes. asyncio answers with a private per-class flag,
    `_sendfile_compatible`, which a transport may declare here too."""
    return isinstance(transport, SSLTransport) or bool(
        getattr(transport, "_sendfile_compatible", None))


async def sendfile(loop: LoopInternals, transport: asyncio.WriteTransport, file: Any, offset: int = 0,
                   count: int | None = None, *, fallback: bool = True) -> int:
    """Send `file` over `transport` (from `offset`, `count` bytes or to its end); bytes sent."""
    if transport.is_closing():
        raise RuntimeError("Transport is closing")
    native = isinstance(transport, SocketTransport)
    if not native and not _takes_fallback(transport):
        raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
    if not native and not fallback:
        raise RuntimeError(f"fallback is disabled and native sendfile is not supported "
                           f"for transport {transport!r}")
    _check_args(file, offset, count)
    if native:
        try:
            return await _transport_native(loop, transport, file, offset, count)
        except asyncio.SendfileNotAvailableError:
            if not fallback:
                raise
    gate = _DrainingProtocol(loop, transport)

    async def write(block: memoryview) -> None:
        await gate.drain()
        transport.write(bytes(block))  # a copy: the next block reuses the buffer

    try:
        return await _send_blocks(loop, file, offset, count, write)
    finally:
        gate.restore()


async def _transport_native(loop: LoopInternals, transport: SocketTransport, file: Any, offset: int,
                            count: int | None) -> int:
    """The socket's own sendfile, once what the transport buffered is out; the transport
    lends its socket for the call (reading paused, writes refused meanwhile)."""
    emptied = transport._make_empty_waiter()  # refuses a second sendfile at once
    resume_reading = transport.is_reading()
    transport.pause_reading()
    fd = transport._fd
    try:
        await emptied
        loop._lend_fd(fd)
        try:
            return await loop.sock_sendfile(transport._sock, file, offset, count,
                                            fallback=False)
        finally:
            loop._return_fd(fd)
    finally:
        transport._reset_empty_waiter()
        if resume_reading:
            transport.resume_reading()


class _DrainingProtocol(asyncio.Protocol):
    """Stands in for the application's protocol during the fallback: it receives the
    transport's pause/resume_writing, so each block waits until the buffer has room."""

    def __init__(self, loop: LoopInternals, transport: Any) -> None:
        self._loop = loop
        self._transport = transport
        self._app = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        self._was_paused = bool(getattr(transport, "_protocol_paused", False))
        self._ready: asyncio.Future | None = None
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
