"""The stream transport for connected TCP and Unix sockets.

One class, `SocketTransport`, implements `asyncio.Transport` (so `isinstance` checks hold)
over a non-blocking stream socket. The hot path is short on purpose:

- reading: the loop calls `_read_ready` (or `_read_ready_buffered` for an
  `asyncio.BufferedProtocol`) straight from the poll result. Which of the two is chosen once,
  in `set_protocol`, by registering that bound method with the loop, so a read costs one
  receive call and one protocol call, with no branching on the protocol's kind (see
  `READ_SIZE` for how the bytes are received).
- writing: `write()` sends at once when nothing is buffered and keeps only the remainder;
  when the socket becomes writable again, everything buffered goes out in one `sendmsg`.

Flow control follows asyncio: above the high-water mark the protocol's `pause_writing()` is
called, and `resume_writing()` once the buffer drains to the low-water mark.

Lifecycle guarantees: `connection_lost` is called exactly once, always after
`connection_made`, and the socket is closed exactly once, right after it.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import warnings
import weakref
from itertools import islice
from typing import Any

from . import flow

logger = logging.getLogger("asyncio")

#: How a read gets its bytes: `recv(READ_SIZE)` normally, and `recv_into` the loop's shared
#: READ_BUFFER_SIZE buffer (then copying out what arrived) while a bulk transfer is on.
#: - `recv(n)` allocates n bytes per call; with glibc, beyond 128 KiB that is mmap/munmap per
#:   call (3.5x slower at 256 KiB), so it never asks for more than 64 KiB. For small messages
#:   it is the cheapest read (1 KiB over a socketpair: 2.01 us vs 2.18 us with recv_into
#:   + tobytes, median of 15 interleaved runs of 20k).
#: - Once a read fills 64 KiB more is likely waiting: reading into the shared 256 KiB buffer
#:   takes a 100 KiB message in one call instead of two (server CPU per 100 KiB echo:
#:   23 -> 17-18 us). A read under BULK_EXIT bytes ends the bulk mode.
READ_SIZE = 65536
READ_BUFFER_SIZE = 262144
BULK_EXIT = 16384
#: asyncio's default high-water mark; the low-water mark defaults to a quarter of it.
#: asyncio logs a warning once this many writes were made after the connection was lost.
CONNLOST_WRITES_BEFORE_WARNING = 5
#: The most buffers one sendmsg takes (POSIX IOV_MAX is at least 16; Linux allows 1024).
try:
    import os as _os
    MAX_IOV = min(_os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):
    MAX_IOV = 16

_BYTES_LIKE = (bytes, bytearray, memoryview)


def set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off for TCP, as asyncio does for every stream transport."""
    if (sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM and sock.proto == socket.IPPROTO_TCP):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


#: One receive buffer per loop, shared by all its transports (see `_read_ready`).
_read_buffers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _loop_read_buffer(loop: Any) -> memoryview:
    """The loop's shared receive buffer: only its own thread reads into it, so one is enough."""
    buf = _read_buffers.get(loop)
    if buf is None:
        buf = _read_buffers[loop] = memoryview(bytearray(READ_BUFFER_SIZE))
    return buf


def _set_result_unless_cancelled(fut: asyncio.Future, result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)


class SocketTransport(asyncio.Transport):
    """A connected stream socket as an asyncio transport."""

    __slots__ = (
        "_loop", "_sock", "_fd", "_protocol", "_server",
        "_buffer", "_buffer_size", "_conn_lost", "_closing", "_reading_paused", "_eof",
        "_protocol_paused", "_high_water", "_low_water", "_empty_waiter", "_read_cb",
        "_connected", "_rbuf", "_bulk", "_data_received", "__weakref__",
    )

    def __init__(self, loop: Any, sock: socket.socket, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future | None = None, extra: dict | None = None,
                 server: Any = None) -> None:
        super().__init__(extra)
        self._extra["socket"] = sock
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._rbuf = _loop_read_buffer(loop)
        self._bulk = False
        self._server = server
        # Made on the first write the kernel doesn't take, dropped once drained: most
        # connections are idle most of the time, and an empty deque costs ~600 bytes.
        self._buffer: collections.deque | None = None
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._reading_paused = False
        self._eof = False
        self._protocol_paused = False
        self._high_water = flow.DEFAULT_HIGH_WATER
        self._low_water = flow.DEFAULT_HIGH_WATER // 4
        self._empty_waiter: asyncio.Future | None = None
        self._connected = False
        self._protocol: Any = None
        self._data_received: Any = None
        self._read_cb: Any = None
        set_nodelay(sock)
        self.set_protocol(protocol)
        loop._transports[self._fd] = self
        if server is not None:
            server._attach(self)
        loop.call_soon(self._connection_made)
        # Reading starts after connection_made has run, as on the standard loop.
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fd}")
        if self._sock is not None:
            info.append("read=" + ("polling" if self.is_reading() else "idle"))
            info.append(f"write=<{'polling' if self._buffer else 'idle'}, "
                        f"bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))

    def __del__(self, _warn=warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()

    # ------------------------------------------------------------------ protocol

    def _connection_made(self) -> None:
        self._connected = True
        self._protocol.connection_made(self)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Choose the read callback for this protocol's kind, once, here."""
        if isinstance(protocol, asyncio.BufferedProtocol):
            read_cb = self._read_ready_buffered
        else:
            read_cb = self._read_ready
        self._protocol = protocol
        self._data_received = getattr(protocol, "data_received", None)
        changed = self._read_cb is not None and read_cb.__func__ is not self._read_cb.__func__
        self._read_cb = read_cb
        if changed and self.is_reading() and self._sock is not None:
            self._loop._add_reader(self._fd, read_cb)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def _start_reading(self) -> None:
        if not self._closing and not self._reading_paused:
            self._loop._add_reader(self._fd, self._read_cb)

    # ------------------------------------------------------------------ reading

    def _read_ready(self) -> None:
        try:
            if self._bulk:
                nbytes = self._sock.recv_into(self._rbuf)
                data = self._rbuf[:nbytes].tobytes()
                if nbytes < BULK_EXIT:
                    self._bulk = False
            else:
                data = self._sock.recv(READ_SIZE)
                if len(data) == READ_SIZE:
                    self._bulk = True
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._read_eof()
            return
        try:
            self._data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _read_ready_buffered(self) -> None:
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            nbytes = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not nbytes:
            self._read_eof()
            return
        try:
            self._protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def _read_eof(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # The protocol may still write; nothing more will be read.
            self._loop._remove_reader(self._fd)
        else:
            self.close()

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._reading_paused = True
        self._loop._remove_reader(self._fd)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        self._loop._add_reader(self._fd, self._read_cb)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            if not isinstance(data, _BYTES_LIKE):
                raise TypeError(f"data argument must be a bytes-like object, "
                                f"not {type(data).__name__!r}")
            if isinstance(data, memoryview) and (data.itemsize != 1 or not data.contiguous):
                # Counting must be in bytes (send() returns bytes, len() counts items).
                data = data.tobytes()
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= CONNLOST_WRITES_BEFORE_WARNING:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            if sent == len(data):
                return
            if type(data) is bytes:
                data = memoryview(data)[sent:]  # bytes cannot change: no copy needed
            else:
                # Keep our own copy: the caller may reuse a bytearray once write() returns.
                data = bytes(memoryview(data)[sent:])
            self._loop._add_writer(self._fd, self._write_ready)
            self._buffer = collections.deque()
        elif type(data) is not bytes:
            data = bytes(data)
        self._buffer.append(data)
        self._buffer_size += len(data)
        if self._buffer_size > self._high_water and not self._protocol_paused:
            flow.pause_protocol(self)

    def writelines(self, list_of_data) -> None:
        """Join and write once: one system call for the lot when the socket has room."""
        self.write(b"".join(list_of_data))

    def _write_ready(self) -> None:
        """The socket has room again: flush as much of the buffer as it takes."""
        if self._conn_lost:
            return
        buffer = self._buffer
        try:
            if len(buffer) == 1:
                sent = self._sock.send(buffer[0])
            else:
                sent = self._sock.sendmsg(list(islice(buffer, 0, MAX_IOV)))
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop._remove_writer(self._fd)
            buffer.clear()
            self._buffer_size = 0
            self._fatal_error(exc, "Fatal write error on socket transport")
            if self._empty_waiter is not None:
                self._empty_waiter.set_exception(exc)
            return
        self._buffer_size -= sent
        while sent:
            head = buffer[0]
            size = len(head)
            if sent >= size:
                buffer.popleft()
                sent -= size
            else:
                buffer[0] = memoryview(head)[sent:]
                break
        if self._protocol_paused and self._buffer_size <= self._low_water:
            flow.resume_protocol(self)
        if buffer:
            return
        self._buffer = None
        self._loop._remove_writer(self._fd)
        if self._empty_waiter is not None:
            self._empty_waiter.set_result(None)
        if self._closing:
            self._call_connection_lost(None)
        elif self._eof:
            self._sock.shutdown(socket.SHUT_WR)

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._sock.shutdown(socket.SHUT_WR)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = flow.water_marks(high, low)
        if self._buffer_size > self._high_water and not self._protocol_paused:
            flow.pause_protocol(self)

    # ------------------------------------------------------------ sendfile support

    def _make_empty_waiter(self) -> asyncio.Future:
        """A future done when the write buffer is empty (sendfile waits on it)."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._buffer:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None

    # ------------------------------------------------------------ closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; connection_lost follows once everything written has been sent."""
        if self._closing:
            return
        self._closing = True
        self._loop._remove_reader(self._fd)
        if not self._buffer:
            self._conn_lost += 1
            self._loop._remove_writer(self._fd)
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close at once, discarding whatever is still buffered."""
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # A peer that resets or disappears is routine; anything else is a bug worth showing.
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message, "exception": exc,
                "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._loop._remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._loop._remove_reader(self._fd)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._connected:
                self._protocol.connection_lost(exc)
        finally:
            sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()
            self._protocol = None
            self._read_cb = None
            server, self._server = self._server, None
            if server is not None:
                server._detach(self)
