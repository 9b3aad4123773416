"""The one lifecycle every fd transport shares: states, flow control, closing, and the rules
for re-entrant protocol callbacks.

Socket streams, write and read pipes and datagram endpoints differ in how they move bytes;
they do not differ in when a protocol may write, when it is told to pause, or how and when a
connection ends. Those rules live here, once. A transport module supplies only what is
specific to its kind of fd: the read path (kept inline in each, it is the hot path), the
system calls that write, and how its file object is closed.

The state machine
-----------------

::

    OPEN --close()--> CLOSING --buffer drained--> LOST --connection_lost ran--> CLOSED
      |                  |                         ^
      +---abort() / fatal error / (CLOSING: abort)-+

- OPEN: reads are delivered (unless paused), writes are sent or buffered.
- CLOSING (`_closing` true, `_conn_lost` 0): close() was called with bytes still buffered.
  Reading has stopped; the buffer keeps flushing, and a socket still accepts writes, as
  asyncio's does (a protocol streaming from `resume_writing` finishes its body).
- LOST (`_conn_lost` >= 1): `connection_lost` is scheduled, exactly once, by
  `_schedule_connection_lost`, the only place that schedules it. Later writes are counted and
  dropped, and from the fifth on each logs a warning, as on the standard loop.
- CLOSED: `connection_lost` has run, the fd is closed (exactly once, in `_release`), and the
  protocol is dropped.

Write-side sub-state, orthogonal to the above: `_buffer` (None when empty, so an idle
connection carries no deque), `_buffer_size`, `_protocol_paused` and `_eof` (write_eof asked;
the shutdown happens once the buffer drains).

Re-entrancy
-----------

Any protocol callback may call any transport method: `write`, `writelines`, `write_eof`,
`close`, `abort`, `pause_reading`, `resume_reading` and `set_write_buffer_limits`, from inside
`connection_made`, `data_received`, `get_buffer`/`buffer_updated`, `eof_received`,
`pause_writing` and `resume_writing`. The code keeps that safe with three habits:

1. Finish the transport's own bookkeeping *before* calling the protocol: e.g. the drained
   buffer is dropped and the writer removed before `resume_writing()` runs, so a write made
   inside it starts a fresh buffer that nothing afterwards discards.
2. After a protocol call returns, re-read the transport's state instead of trusting locals:
   the protocol may have written more, closed, or aborted in between.
3. Every transition that ends the connection goes through `_schedule_connection_lost`, whose
   guard (`_conn_lost`) makes a second close, abort or fatal error a no-op.

`connection_lost` always runs from its own loop callback, never from inside a transport
method, so a protocol that calls `close()` never sees its own `connection_lost` re-entrantly.

Context
-------

A protocol's callbacks run in the connection's own `contextvars` context, a copy of the one
current when the transport was made (inside create_connection, or the server's accept, whose
context is create_server's): `connection_made`, `data_received`, `get_buffer` /
`buffer_updated`, `eof_received`, `resume_writing` and `connection_lost` come from loop
callbacks registered with that context, never from whatever code happened to call
`close()`, `resume_reading()` or `write()` (uvloop's rule). `pause_writing()` is the one
callback made synchronously inside the caller's `write()`, and so runs in the caller's
context: entering the connection's context there would fail whenever the caller already
runs in it (a write from `data_received`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import warnings
from typing import Any

from ..contract import LoopInternals
from .socket_view import TransportSocket
from . import flow

logger = logging.getLogger("asyncio")

#: asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES: writes made after the connection was lost are
#: dropped, and past this count each logs a warning. Each transport counts as its asyncio
#: counterpart does (an fd transport counts the loss itself, so its fifth write warns; TLS
#: counts dropped writes only, so its sixth does).
WRITES_AFTER_LOSS_BEFORE_WARNING = 5


def is_buffered(protocol: Any) -> bool:
    """Whether decrypted bytes go into the protocol's own buffers (get_buffer/buffer_updated).

    uvloop's rule, wider than an isinstance check: any protocol that has get_buffer and
    buffer_updated and is not an ``asyncio.Protocol`` is served as a buffered one, so a
    protocol written against the BufferedProtocol interface without subclassing it still
    gets its data (it has no data_received to fall back on).
    """
    if isinstance(protocol, asyncio.BufferedProtocol):
        return True
    return (hasattr(protocol, "get_buffer") and hasattr(protocol, "buffer_updated")
            and not isinstance(protocol, asyncio.Protocol))


def peer_name(sock: Any) -> Any:
    """The socket's peer address, or None if it has none (asyncio's "peername")."""
    try:
        return sock.getpeername()
    except OSError:
        return None


def socket_extra(sock: Any, peername: Any) -> dict[str, Any]:
    """asyncio's extra info for a socket: a view of the socket that refuses what would
    break the transport (reading, writing, closing it), sockname and `peername`."""
    try:
        sockname = sock.getsockname()
    except OSError:
        sockname = None
    return {"socket": TransportSocket(sock), "sockname": sockname, "peername": peername}


def set_result_unless_cancelled(fut: asyncio.Future | None, result: Any = None) -> None:
    """Complete a creation waiter unless its awaiter gave up."""
    if fut is not None and not fut.cancelled():
        fut.set_result(result)


class FdTransport(asyncio.Transport):
    """What every transport over one file descriptor shares (see the module docstring).

    A subclass names the attribute that holds its file object (`_file_attr`: the socket or
    the pipe; the file is closed exactly once, after connection_lost) and sets `_read_cb`,
    the bound method the loop calls when the fd is readable (None for a transport that
    never reads). `_is_routine(exc)` says which errors are the peer's doing rather than a
    bug: those are logged in debug mode only, the rest go to the exception handler.
    """

    __slots__ = (
        "_loop", "_fd", "_protocol", "_context", "_connected", "_closing", "_conn_lost",
        "_reading_paused", "_read_cb",
        "_buffer", "_buffer_size", "_protocol_paused", "_high_water", "_low_water",
        "__dict__", "__weakref__",
    )

    #: Where the subclass keeps its file object.
    _file_attr = "_sock"

    def _init_lifecycle(self, loop: LoopInternals, fd: int,
                        protocol: asyncio.BaseProtocol) -> None:
        self._loop = loop
        self._fd = fd
        self._protocol = protocol
        #: Every protocol callback runs in this one context: a copy of the one current when
        #: the connection was made (see "Context" above).
        self._context = contextvars.copy_context()
        self._connected = False
        self._closing = False
        self._conn_lost = 0
        self._reading_paused = False
        self._read_cb = None
        self._buffer = None
        self._buffer_size = 0
        self._protocol_paused = False
        self._high_water, self._low_water = flow.DEFAULT_MARKS

    def _start(self, waiter: asyncio.Future | None, keep_alive: bool = False) -> None:
        """Claim the fd, then: connection_made, start reading, wake the creator — in order.

        `keep_alive`: the loop's record of the fd holds this transport strongly until it is
        released (a server's connection: see `CoreLoop._claim_fd`), not weakly."""
        loop = self._loop
        loop._claim_fd(self._fd, self, keep_alive)
        loop.call_soon(self._connection_made, context=self._context)
        if self._read_cb is not None:
            # Reading starts only once connection_made has run, as on the standard loop.
            loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(set_result_unless_cancelled, waiter, None)

    def __del__(self, _warn=warnings.warn) -> None:
        if self._file_is_open():
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._close_file()

    def _state_name(self) -> str:
        if not self._file_is_open():
            return "closed"
        return "closing" if self._closing else "open"

    # ------------------------------------------------------------------ the protocol

    def _connection_made(self) -> None:
        self._connected = True
        self._protocol.connection_made(self)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # ------------------------------------------------------------------ reading

    def _start_reading(self) -> None:
        if not self._closing and not self._reading_paused:
            self._loop._add_reader(self._fd, self._read_cb, context=self._context)

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._closing

    def pause_reading(self) -> None:
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True
        self._loop._remove_reader(self._fd)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        self._loop._add_reader(self._fd, self._read_cb, context=self._context)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    # ------------------------------------------------------------------ flow control

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water, self._low_water = flow.water_marks(high, low)
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._buffer_size > self._high_water and not self._protocol_paused:
            flow.pause_protocol(self)

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffer_size <= self._low_water:
            flow.resume_protocol(self)

    def _count_write_after_loss(self) -> None:
        if self._conn_lost >= WRITES_AFTER_LOSS_BEFORE_WARNING:
            logger.warning("socket.send() raised exception.")
        self._conn_lost += 1

    # ------------------------------------------------------------------ closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; connection_lost follows once everything written has been sent."""
        if self._closing:
            return
        self._closing = True
        self._loop._remove_reader(self._fd)
        if not self._buffer:
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        """Close at once, discarding whatever is still buffered."""
        self._force_close(None)

    def _is_routine(self, exc: BaseException) -> bool:
        """A peer that resets or goes away is routine; anything else is a bug worth showing."""
        return isinstance(exc, OSError)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if self._is_routine(exc):
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
        if self._buffer is not None:
            self._discard_buffer()
        if not self._closing:
            self._closing = True
            self._loop._remove_reader(self._fd)
        self._schedule_connection_lost(exc)

    def _discard_buffer(self) -> None:
        self._buffer = None
        self._buffer_size = 0
        self._loop._remove_writer(self._fd)

    def _schedule_connection_lost(self, exc: BaseException | None) -> None:
        """The one place that ends a connection: at most once, always from a fresh callback."""
        if self._conn_lost:
            return
        self._conn_lost = 1
        self._closing = True
        loop = self._loop
        loop._remove_writer(self._fd)
        loop._remove_reader(self._fd)
        loop.call_soon(self._call_connection_lost, exc, context=self._context)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._connected:
                self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self) -> None:
        """After connection_lost: give up and close the fd, and break the transport <->
        protocol cycle."""
        self._loop._release_fd(self._fd, self)
        self._close_file()
        self._protocol = None
        self._read_cb = None

    def _file_is_open(self) -> bool:
        return getattr(self, self._file_attr, None) is not None

    def _close_file(self) -> None:
        """Close the file object exactly once, however often this is called."""
        file = getattr(self, self._file_attr, None)
        if file is not None:
            setattr(self, self._file_attr, None)
            file.close()
