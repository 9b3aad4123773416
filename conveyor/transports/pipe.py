"""Pipe transports: one direction of bytes over a pipe, FIFO, socket or character device.

`connect_read_pipe` and `connect_write_pipe` wrap a file object (its fd is made non-blocking
and the file object is closed exactly once, when the transport has finished) in a transport
with asyncio's semantics:

- the read side reads at most 64 KiB per readiness event (larger reads make glibc map and
  unmap memory each time), hands each chunk to `data_received`, and on EOF calls
  `eof_received` then `connection_lost(None)`; reading a pty whose other end has closed fails
  with EIO, which is the pty's way of saying EOF and is not reported as an error;
- the write side writes at once when nothing is buffered and buffers only the remainder,
  pauses the protocol above the high-water mark, flushes what was written before closing,
  and notices the reading end going away by watching its own fd for readability (a pipe's
  write end becomes "readable" - EPOLLERR/EPOLLHUP - when the last reader closes), so a
  closed reader ends the transport even when nothing is being written.

Both are used by the subprocess transport for the child's stdin, stdout and stderr.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import warnings
from typing import Any

from . import flow

logger = logging.getLogger("asyncio")

#: Bytes read per readiness event (see the module docstring).
READ_CHUNK = 64 * 1024
#: asyncio's default write-buffer limits.
#: After this many writes to a lost pipe, each further write logs a warning (asyncio's value).
LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5


def _pipe_fd(pipe: Any) -> int:
    """The fd of `pipe`, refusing what is not a pipe, socket or character device."""
    fd = pipe.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        raise ValueError("Pipe transport is only for pipes, sockets and character devices")
    return fd


def _set_result_unless_cancelled(waiter: asyncio.Future | None) -> None:
    if waiter is not None and not waiter.cancelled():
        waiter.set_result(None)


class ReadPipeTransport(asyncio.ReadTransport):
    """The read end of a pipe (or a socket, FIFO or pty read as a stream)."""

    _pipe = None  # until the fd has passed the checks: __del__ has nothing to close


    def __init__(self, loop: Any, pipe: Any, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future | None = None, extra: dict | None = None) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._fileno = _pipe_fd(pipe)
        self._loop = loop
        self._pipe = pipe
        self._protocol = protocol
        self._closing = False
        self._paused = False
        os.set_blocking(self._fileno, False)
        loop._transports[self._fileno] = self
        loop.call_soon(protocol.connection_made, self)
        # The reader is added only after connection_made has run.
        loop.call_soon(self._start_reading)
        loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        state = "closed" if self._pipe is None else ("closing" if self._closing else "open")
        return f"<{type(self).__name__} fd={self._fileno} {state}>"

    def _start_reading(self) -> None:
        if not self._closing and not self._paused:
            self._loop._add_reader(self._fileno, self._read_ready)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fileno, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data:
            self._protocol.data_received(data)
            return
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._loop._remove_reader(self._fileno)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop._add_reader(self._fileno, self._read_ready)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def __del__(self, _warn=warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            # A pty whose other side closed: that is its EOF.
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message, "exception": exc,
                "transport": self, "protocol": self._protocol,
            })
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


class WritePipeTransport(asyncio.WriteTransport):
    """The write end of a pipe (or a socket, FIFO or pty written as a stream)."""

    _pipe = None  # until the fd has passed the checks: __del__ has nothing to close


    def __init__(self, loop: Any, pipe: Any, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future | None = None, extra: dict | None = None) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._fileno = fd = _pipe_fd(pipe)
        self._loop = loop
        self._pipe = pipe
        self._protocol = protocol
        self._buffer = bytearray()
        self._conn_lost = 0
        self._closing = False
        self._protocol_paused = False
        self._high_water = flow.DEFAULT_HIGH_WATER
        self._low_water = flow.DEFAULT_HIGH_WATER // 4
        mode = os.fstat(fd).st_mode
        os.set_blocking(fd, False)
        loop._transports[fd] = self
        loop.call_soon(protocol.connection_made, self)
        # Watching the write end for "readable" is how a pipe or socket tells us the reader
        # has gone. A character device (a pty) would report readable for its own input, so
        # it is not watched.
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            loop.call_soon(self._watch_reader)
        loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        state = "closed" if self._pipe is None else ("closing" if self._closing else "open")
        return f"<{type(self).__name__} fd={self._fileno} {state} bufsize={len(self._buffer)}>"

    def _watch_reader(self) -> None:
        if self._pipe is not None and not self._closing:
            self._loop._add_reader(self._fileno, self._reader_gone)

    def _reader_gone(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._close(BrokenPipeError() if self._buffer else None)

    # -- writing

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if isinstance(data, bytearray):
            data = memoryview(data)  # the caller may change it after we return
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                sent = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if sent == len(data):
                return
            if sent:
                data = memoryview(data)[sent:]
            self._loop._add_writer(self._fileno, self._write_ready)
        self._buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        buffer = self._buffer
        try:
            sent = os.write(self._fileno, buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            buffer.clear()
            self._conn_lost += 1
            self._loop._remove_writer(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if sent == len(buffer):
            buffer.clear()
            self._loop._remove_writer(self._fileno)
            self._maybe_resume_protocol()
            if self._closing:
                self._loop._remove_reader(self._fileno)
                self._call_connection_lost(None)
            return
        if sent:
            del buffer[:sent]

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._loop._remove_reader(self._fileno)
            self._loop.call_soon(self._call_connection_lost, None)
        # else: _write_ready finishes once the buffer is flushed

    # -- flow control

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = flow.water_marks(high, low)
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def _maybe_pause_protocol(self) -> None:
        if len(self._buffer) > self._high_water and not self._protocol_paused:
            flow.pause_protocol(self)

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low_water:
            flow.resume_protocol(self)

    # -- closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()  # flushes what was written, then closes

    def abort(self) -> None:
        self._close(None)

    def __del__(self, _warn=warnings.warn) -> None:
        if self._pipe is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if isinstance(exc, OSError):
            # EPIPE and friends: the reader went away, which is not a bug in the program.
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message, "exception": exc,
                "transport": self, "protocol": self._protocol,
            })
        self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        if self._pipe is None or self._loop is None:
            return
        already_closing = self._closing and not self._buffer
        self._closing = True
        if self._buffer:
            self._loop._remove_writer(self._fileno)
        self._buffer.clear()
        self._loop._remove_reader(self._fileno)
        if not already_closing:
            self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._pipe is None:
            return  # already finished (abort raced with a graceful close)
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None


async def connect_read_pipe(loop: Any, protocol_factory, pipe: Any
                            ) -> tuple[ReadPipeTransport, asyncio.BaseProtocol]:
    """Read from `pipe` (a file object) through a protocol made by `protocol_factory`."""
    return await _connect(loop, ReadPipeTransport, protocol_factory, pipe)


async def connect_write_pipe(loop: Any, protocol_factory, pipe: Any
                             ) -> tuple[WritePipeTransport, asyncio.BaseProtocol]:
    """Write to `pipe` (a file object) through a protocol made by `protocol_factory`."""
    return await _connect(loop, WritePipeTransport, protocol_factory, pipe)


async def _connect(loop: Any, transport_class: type, protocol_factory, pipe: Any
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
