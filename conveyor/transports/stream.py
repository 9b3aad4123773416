"""The byte-stream write path shared by socket transports and write pipes.

Both write to an fd that takes bytes in order and may take only part of them. A plain
`socket.socket` and a pipe are written with `os.write` / `os.writev` on the fd: for a
connected stream socket those are send(2) with no flags, and they cost ~1,000 fewer
instructions per message than the socket methods, whose arguments go through the old
`PyArg_ParseTuple` (callgrind, 3.11: 2,650 against 3,693 per send + receive pair). Before
writing to a plain socket's fd, the socket's `_closed` flag is read (an attribute load;
asking `fileno()` costs ~300 instructions): if the program closed the socket behind the
transport's back, the write fails with EBADF, as `send` would, instead of landing in
whatever file reuses the number. A socket *subclass* is written through its own `send` and
`sendmsg` (the "sink"), so an override is honoured, as on the standard loop (websockets'
tests instrument `send` that way). One implementation of the rules:

- `write()` sends at once when nothing is buffered and keeps only what the kernel did not
  take; a buffered `bytes` is kept as a view (it cannot change), anything else is copied,
  because the caller may reuse its bytearray as soon as write() returns.
- When the fd becomes writable, up to `MAX_IOV` buffered chunks go out in one `writev`.
- Flow control and the close/abort/connection_lost lifecycle are `FdTransport`'s; the order
  in which `_write_ready` does its bookkeeping and calls the protocol is what makes a write,
  close or abort from inside `resume_writing()` safe (see base.py, "Re-entrancy").
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
from itertools import islice

from . import flow
from .base import FdTransport

#: The most buffers one writev takes (POSIX IOV_MAX is at least 16; Linux allows 1024).
try:
    MAX_IOV = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):
    MAX_IOV = 16

_BYTES_LIKE = (bytes, bytearray, memoryview)
_write = os.write
_writev = os.writev


def _closed_socket() -> OSError:
    """What `send` raises on a socket closed behind its transport's back."""
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


class StreamTransport(FdTransport):
    """An FdTransport whose writes are an ordered byte stream.

    Subclasses call `_init_stream` with the sink (a socket subclass, whose `send` and
    `sendmsg` are used) or None (write to `_fd` directly: see the module docstring) and,
    for a plain socket, the socket as `owner`; supply
    `_shutdown_write()` (what write_eof does once the buffer is empty) and set
    `_write_error` to the message a failed write is reported with.
    """

    __slots__ = ("_sink", "_owner", "_eof", "_empty_waiter")

    _write_error = "Fatal write error on transport"
    #: A socket keeps accepting writes while close() flushes, as asyncio's does; a pipe
    #: drops them (asyncio's pipe does the same).
    _writes_while_closing = True

    def _init_stream(self, sink, owner=None) -> None:
        self._sink = sink
        #: The plain socket that `_fd` belongs to (None for a pipe): once it is closed, a
        #: write must fail as `send` would, not go to the fd number's next owner.
        self._owner = owner
        self._eof = False
        self._empty_waiter: asyncio.Future | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            if not isinstance(data, _BYTES_LIKE):
                raise TypeError(f"data argument must be a bytes-like object, "
                                f"not {type(data).__name__!r}")
            if isinstance(data, memoryview) and (data.itemsize != 1 or not data.contiguous):
                # Counting must be in bytes (write() returns bytes, len() counts items).
                data = data.tobytes()
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._closing:  # (LOST implies closing: one test on the hot path)
            if self._conn_lost:
                self._count_write_after_loss()
                return
            if not self._writes_while_closing:
                return
        buffer = self._buffer
        if buffer is None:
            sink = self._sink
            try:
                if sink is not None:
                    sent = sink.send(data)
                else:
                    owner = self._owner
                    if owner is not None and owner._closed:
                        raise _closed_socket()
                    sent = _write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, self._write_error)
                return
            if sent == len(data):
                return
            if type(data) is bytes:
                data = memoryview(data)[sent:]  # bytes cannot change: no copy needed
            else:
                data = bytes(memoryview(data)[sent:])
            buffer = self._buffer = collections.deque()
            self._loop._add_writer(self._fd, self._write_ready, context=self._context)
        elif type(data) is not bytes:
            data = bytes(data)
        buffer.append(data)
        self._buffer_size += len(data)
        if self._buffer_size > self._high_water and not self._protocol_paused:
            flow.pause_protocol(self)

    def writelines(self, list_of_data) -> None:
        """Join and write once: one system call for the lot when the fd has room."""
        self.write(b"".join(list_of_data))

    def _write_ready(self) -> None:
        """The fd has room again: flush as much of the buffer as it takes."""
        buffer = self._buffer
        if buffer is None:
            return  # discarded by abort() after this callback was queued
        sink = self._sink
        try:
            if sink is None and self._owner is not None and self._owner._closed:
                raise _closed_socket()
            if len(buffer) == 1:
                sent = _write(self._fd, buffer[0]) if sink is None else sink.send(buffer[0])
            elif sink is None:
                sent = _writev(self._fd, list(islice(buffer, 0, MAX_IOV)))
            else:
                sent = sink.sendmsg(list(islice(buffer, 0, MAX_IOV)))
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, self._write_error)
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
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
        if buffer:
            if self._protocol_paused and self._buffer_size <= self._low_water:
                flow.resume_protocol(self)  # its writes join the same buffer
            return
        # Drained. The bookkeeping comes first, so that whatever the protocol does inside
        # resume_writing() (write, close, abort, write_eof) starts from the true state.
        self._buffer = None
        self._loop._remove_writer(self._fd)
        eof_pending = self._eof
        if self._protocol_paused:
            flow.resume_protocol(self)
            if self._buffer is not None:
                return  # it wrote more: keep flushing; the rest happens when that drains
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._closing:
            self._schedule_connection_lost(None)
        elif eof_pending:
            self._shutdown_write()

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if self._buffer is None:
            self._shutdown_write()

    def can_write_eof(self) -> bool:
        return True

    def _shutdown_write(self) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    # ------------------------------------------------------------ sendfile support

    def _make_empty_waiter(self) -> asyncio.Future:
        """A future done when the write buffer is empty (sendfile waits on it)."""
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if self._buffer is None:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None

    def _release(self) -> None:
        self._sink = None
        self._owner = None
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("Connection is closed by peer"))
        super()._release()
