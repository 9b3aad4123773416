"""The stream transport for connected TCP and Unix sockets.

One class, `SocketTransport`, implements `asyncio.Transport` (so `isinstance` checks hold)
over a non-blocking stream socket. The hot path is short on purpose:

- reading: the loop calls `_read_ready` (or `_read_ready_buffered` for an
  `asyncio.BufferedProtocol`) straight from the poll result. Which of the two is chosen once,
  in `set_protocol`, by registering that bound method with the loop, so a read costs one
  receive call and one protocol call, with no branching on the protocol's kind (see
  `READ_SIZE` for how the bytes are received).
- writing, flow control, closing: shared with the write pipe (`stream.py`) and every other
  transport (`base.py`, whose docstring is the state machine and its re-entrancy rules).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from ..contract import LoopInternals
from .base import is_buffered, peer_name, socket_extra
from .stream import StreamTransport

logger = logging.getLogger("asyncio")

#: How a read gets its bytes: `os.read(fd, n)` (a socket subclass: `recv(n)`; stream.py says
#: why), which allocates n bytes and lets the kernel fill them, so no byte is copied twice.
#: - n is READ_SIZE normally. `os.read(fd, n)` allocates n bytes per call, trimmed to what
#:   arrived; for small messages asking for 1 KiB or 64 KiB costs the same.
#: - Once a read fills 64 KiB more is likely waiting, and n is BULK_READ until a read under
#:   BULK_EXIT bytes: a 100 KiB message in one call instead of two. BULK_READ stays under
#:   glibc's default mmap threshold (128 KiB), above which every call would map and unmap
#:   its block (3.5x slower at 256 KiB). Reading into a shared 256 KiB buffer and copying
#:   out what arrived, the previous bulk mode, cost more: server CPU per 100 KiB echo
#:   31.1 -> 26.7 µs (3.11), 27.3 -> 24.6 (3.13), interleaved medians, uvloop 29.1 / 27.0.
READ_SIZE = 65536
BULK_READ = 131072 - 1024  # room for the bytes object's header and malloc's
BULK_EXIT = 16384
_read = os.read


def set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off for TCP, as asyncio does for every stream transport."""
    if (sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM and sock.proto == socket.IPPROTO_TCP):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class SocketTransport(StreamTransport):
    """A connected stream socket as an asyncio transport.

    The lifecycle, flow control and write path are `StreamTransport`'s; what is here is
    what only a socket has: the two read paths (and the bulk read size), TCP_NODELAY, the
    server it belongs to, and `shutdown(SHUT_WR)` for write_eof.
    """

    __slots__ = ("_sock", "_server", "_bulk", "_data_received", "_read_eof_seen", "_peername")

    _write_error = "Fatal write error on socket transport"

    def __init__(self, loop: LoopInternals, sock: socket.socket, protocol: asyncio.BaseProtocol,
                 waiter: asyncio.Future | None = None, peername: Any = None,
                 server: Any = None) -> None:
        """`peername`: the peer's address when the caller has it (accept returns it), else
        None and the socket is asked now, while the peer is surely still there."""
        #: The extra-info dict is made on first use (see get_extra_info).
        self._extra = None
        self._sock = None  # until the checks below pass, __del__ has nothing to close
        self._peername = peer_name(sock) if peername is None else peername
        self._init_lifecycle(loop, sock.fileno(), protocol)
        # A plain socket is read and written through its fd (stream.py says why); a
        # subclass through its own methods, so that overrides are honoured.
        if type(sock) is socket.socket:
            self._init_stream(None, owner=sock)
        else:
            self._init_stream(sock)
        self._sock = sock
        self._bulk = False
        self._server = server
        self._read_eof_seen = False
        self._data_received: Any = None
        set_nodelay(sock)
        self.set_protocol(protocol)
        if server is not None:
            server._attach(self)
        self._start(waiter, keep_alive=server is not None)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        state = self._state_name()
        if state != "open":
            info.append(state)
        info.append(f"fd={self._fd}")
        if self._sock is not None:
            info.append("read=" + ("polling" if self.is_reading() else "idle"))
            info.append(f"write=<{'polling' if self._buffer else 'idle'}, "
                        f"bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """asyncio's extra info ("socket", "sockname", "peername"), made on first use.

        An idle server connection whose protocol never asks saves the dict, the socket
        view and the sockname tuple (~370 bytes, scripts/conn_memory.py). The peername is
        taken at creation, as asyncio does, because a peer that has gone no longer has one;
        the sockname of a connected socket cannot change, and `_release` records the lot
        before the socket closes, so asking after close answers as asyncio does.
        """
        extra = self._extra
        if extra is None:
            extra = self._extra = socket_extra(self._sock, self._peername)
        return extra.get(name, default)

    def _release(self) -> None:
        if self._extra is None:
            self._extra = socket_extra(self._sock, self._peername)
        super()._release()
        server, self._server = self._server, None
        if server is not None:
            server._detach(self)

    # ------------------------------------------------------------------ protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Choose the read callback for this protocol's kind, once, here."""
        if is_buffered(protocol):
            read_cb = self._read_ready_buffered
        else:
            read_cb = self._read_ready
        self._protocol = protocol
        self._data_received = getattr(protocol, "data_received", None)
        changed = self._read_cb is not None and read_cb.__func__ is not self._read_cb.__func__
        self._read_cb = read_cb
        if changed and self.is_reading() and self._sock is not None:
            self._loop._add_reader(self._fd, read_cb, context=self._context)

    # ------------------------------------------------------------------ reading

    def _read_ready(self) -> None:
        try:
            # Two spelled-out reads, not one with a size held in a field: that form costs
            # ~80 more instructions per message (callgrind, 1 KiB echo).
            sink = self._sink
            if self._bulk:
                data = _read(self._fd, BULK_READ) if sink is None else sink.recv(BULK_READ)
                if len(data) < BULK_EXIT:
                    self._bulk = False
            else:
                data = _read(self._fd, READ_SIZE) if sink is None else sink.recv(READ_SIZE)
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
        # Nothing more will be read, whatever the protocol does next: a resume_reading()
        # must not register the fd again and deliver a second EOF.
        self._read_eof_seen = True
        self._loop._remove_reader(self._fd)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def _start_reading(self) -> None:
        if not self._read_eof_seen:
            super()._start_reading()

    def resume_reading(self) -> None:
        if self._read_eof_seen:
            self._reading_paused = False
            return
        super().resume_reading()

    # ------------------------------------------------------------------ writing

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc, "Fatal error on socket shutdown")
