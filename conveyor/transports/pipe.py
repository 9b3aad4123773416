"""Pipe transports: one direction of bytes over a pipe, FIFO, socket or character device.

`connect_read_pipe` and `connect_write_pipe` (net/pipes.py) wrap a file object (its fd is
made non-blocking and the file object is closed exactly once, when the transport has
finished) in one of these transports, with asyncio's semantics:

- the read side reads at most 64 KiB per readiness event (larger reads make glibc map and
  unmap memory each time), hands each chunk to `data_received`, and on EOF calls
  `eof_received` then `connection_lost(None)`; reading a pty whose other end has closed fails
  with EIO, which is the pty's way of saying EOF and is not reported as an error;
- the write side is a `StreamTransport` (stream.py: the write path, flow control and
  closing it shares with socket transports); on a pipe, write_eof() is close(), and it notices the reading end going away by watching its own fd for readability (a pipe's
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
from typing import Any

from ..contract import LoopInternals
from .base import FdTransport
from .stream import StreamTransport

logger = logging.getLogger("asyncio")

#: Bytes read per readiness event (see the module docstring).
READ_CHUNK = 64 * 1024


def _pipe_fd(pipe: Any) -> int:
    """The fd of `pipe`, refusing what is not a pipe, socket or character device."""
    fd = pipe.fileno()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        raise ValueError("Pipe transport is only for pipes, sockets and character devices")
    return fd


class _PipeFile:
    """What both pipe transports do with their file object."""

    __slots__ = ()

    _file_attr = "_pipe"

    def _init_pipe(self, loop: LoopInternals, pipe: Any, protocol: asyncio.BaseProtocol) -> int:
        """Check and adopt `pipe` (its fd made non-blocking); the fd."""
        self._pipe = None  # until the fd has passed the checks: __del__ has nothing to close
        self._extra["pipe"] = pipe
        fd = _pipe_fd(pipe)
        self._init_lifecycle(loop, fd, protocol)
        self._pipe = pipe
        os.set_blocking(fd, False)
        return fd

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self._fd} {self._state_name()}>"


class ReadPipeTransport(_PipeFile, FdTransport):
    """The read end of a pipe (or a socket, FIFO or pty read as a stream)."""

    __slots__ = ("_pipe",)

    def __init__(self, loop: LoopInternals, pipe: Any, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future | None = None, extra: dict | None = None) -> None:
        super().__init__(extra)
        self._init_pipe(loop, pipe, protocol)
        self._read_cb = self._read_ready
        self._start(waiter)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
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
        # EOF: eof_received, then connection_lost, each from its own callback (as asyncio).
        self._closing = True
        self._loop._remove_reader(self._fd)
        self._loop.call_soon(self._protocol.eof_received, context=self._context)
        self._schedule_connection_lost(None)

    def _is_routine(self, exc: BaseException) -> bool:
        # A read error on a pipe is unusual enough to show, unlike a socket's reset; but EIO
        # is how a pty says its other side closed: that is its EOF.
        return isinstance(exc, OSError) and exc.errno == errno.EIO


class WritePipeTransport(_PipeFile, StreamTransport):
    """The write end of a pipe (or a socket, FIFO or pty written as a stream)."""

    __slots__ = ("_pipe",)

    _write_error = "Fatal write error on pipe transport"
    _writes_while_closing = False

    # A write transport has no read side: asyncio's raise NotImplementedError, and code
    # probes them that way.
    is_reading = asyncio.ReadTransport.is_reading
    pause_reading = asyncio.ReadTransport.pause_reading
    resume_reading = asyncio.ReadTransport.resume_reading

    def __init__(self, loop: LoopInternals, pipe: Any, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future | None = None, extra: dict | None = None) -> None:
        super().__init__(extra)
        fd = self._init_pipe(loop, pipe, protocol)
        self._init_stream(None)
        mode = os.fstat(fd).st_mode
        self._start(waiter)
        # Watching the write end for "readable" is how a pipe or socket tells us the reader
        # has gone. A character device (a pty) would report readable for its own input, so
        # it is not watched.
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            loop.call_soon(self._watch_reader)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} fd={self._fd} {self._state_name()} "
                f"bufsize={self._buffer_size}>")

    def _watch_reader(self) -> None:
        if self._pipe is not None and not self._closing:
            self._loop._add_reader(self._fd, self._reader_gone, context=self._context)

    def _reader_gone(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._force_close(BrokenPipeError() if self._buffer else None)

    def write_eof(self) -> None:
        """A pipe has no half-close: its EOF is closing it, once what was written is out."""
        self.close()
