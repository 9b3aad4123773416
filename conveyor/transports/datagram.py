"""Datagram endpoints: the DatagramTransport that create_datagram_endpoint (net/udp.py)
returns.

UDP over IPv4/IPv6 and Unix datagram sockets share one transport. Reading is one syscall per
datagram straight into `datagram_received`. `sendto` sends at once when nothing is queued;
if the kernel's buffer is full the datagram is copied into a FIFO and sent when the socket is
writable again, with asyncio's flow control (`pause_writing` above the high-water mark,
`resume_writing` at the low-water mark). Send and receive errors that concern one datagram
(ICMP port unreachable on a connected socket, a message too long) go to the protocol's
`error_received`, and the transport stays open, as on the standard loop.

Empty datagrams are sent from Python 3.13 and dropped before, as the running Python's
asyncio does.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
from typing import Any

from ..contract import LoopInternals
from .base import FdTransport, peer_name, socket_extra

#: One UDP datagram never exceeds 64 KiB, so one recvfrom of this size reads any of them.
_UDP_READ_SIZE = 65536
#: Unix datagrams may be larger than 64 KiB (up to the socket buffer). They are read into
#: one reused buffer of asyncio's max_size, which avoids glibc's mmap per large recv.
_UNIX_READ_SIZE = 256 * 1024

_SENDS_EMPTY_DATAGRAMS = sys.version_info >= (3, 13)
_INET_FAMILIES = (socket.AF_INET, getattr(socket, "AF_INET6", socket.AF_INET))
_WOULD_BLOCK = (BlockingIOError, InterruptedError)


class DatagramTransport(FdTransport, asyncio.DatagramTransport):
    """A datagram socket as an asyncio transport.

    It is also an `asyncio.Transport`, as the standard loop's datagram transport is (programs
    and CPython's own tests check `isinstance(transport, asyncio.Transport)`); the stream
    methods it inherits that way (write, write_eof, ...) raise NotImplementedError there and
    here alike. Reading can be paused, as on the standard loop. The lifecycle and flow
    control are `FdTransport`'s; the write buffer holds whole datagrams.
    """

    __slots__ = ("_sock", "_address", "_send_connected", "_read_buffer")

    def __init__(self, loop: LoopInternals, sock: socket.socket, protocol: asyncio.BaseProtocol,
                 address: Any = None, waiter: asyncio.Future | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(extra)
        self._sock = None  # until set below, __del__ has nothing to close
        extra = self._extra
        peername = extra["peername"] if "peername" in extra else peer_name(sock)
        extra.update(socket_extra(sock, peername))
        self._init_lifecycle(loop, sock.fileno(), protocol)
        self._sock = sock
        #: The address every datagram goes to, or None for an unconnected endpoint.
        self._address = address
        #: A connected socket sends with send(); sendto() on it would fail on some systems.
        self._send_connected = peername is not None
        # A UDP datagram fits one 64 KiB recvfrom; a Unix one may be larger, and is read
        # into a reused buffer (see _UNIX_READ_SIZE).
        self._read_buffer = None if sock.family in _INET_FAMILIES else bytearray(_UNIX_READ_SIZE)
        self._read_cb = self._read_ready
        self._start(waiter)

    def __repr__(self) -> str:
        info = [type(self).__name__, f"fd={self._fd}", self._state_name()]
        if self._sock is not None:
            if self._extra.get("sockname") is not None:
                info.append(f"sockname={self._extra['sockname']!r}")
            if self._extra.get("peername") is not None:
                info.append(f"peername={self._extra['peername']!r}")
            info.append(f"write_buffer={self._buffer_size}")
        return "<{}>".format(" ".join(info))

    def _release(self) -> None:
        super()._release()
        self._read_buffer = None

    # ------------------------------------------------------------------------ reading

    def _read_ready(self) -> None:
        if self._conn_lost:
            return
        try:
            if self._read_buffer is None:
                data, addr = self._sock.recvfrom(_UDP_READ_SIZE)
            else:
                nbytes, addr = self._sock.recvfrom_into(self._read_buffer)
                data = bytes(self._read_buffer[:nbytes])
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        else:
            self._protocol.datagram_received(data, addr)

    # ------------------------------------------------------------------------ writing

    def sendto(self, data: Any, addr: Any = None) -> None:
        """Send one datagram, to `addr` or, on a connected endpoint, to its peer."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not data and not _SENDS_EMPTY_DATAGRAMS:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost:
            # asyncio drops these only on a connected endpoint (an unconnected one fails on
            # its closed socket); a closed endpoint drops every datagram the same way here.
            self._count_write_after_loss()
            return
        if self._buffer is None:
            try:
                if self._send_connected:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except _WOULD_BLOCK:
                self._buffer = collections.deque()
                self._loop._add_writer(self._fd, self._write_ready, context=self._context)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        # The caller may reuse its buffer once sendto returns: keep an immutable copy.
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data)
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        buffer = self._buffer
        if buffer is None:
            return  # discarded by abort() after this callback was queued
        sock = self._sock
        while buffer:
            data, addr = buffer[0]
            try:
                if self._send_connected:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                buffer.popleft()
                self._buffer_size -= len(data)
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
            buffer.popleft()
            self._buffer_size -= len(data)
        if buffer:
            self._maybe_resume_protocol()  # its sends join the same queue
            return
        # Drained: bookkeeping first, then the protocol (see base.py, "Re-entrancy").
        self._buffer = None
        self._loop._remove_writer(self._fd)
        self._maybe_resume_protocol()
        if self._buffer is None and self._closing:
            self._schedule_connection_lost(None)
