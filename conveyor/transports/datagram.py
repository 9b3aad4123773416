"""Datagram endpoints: create_datagram_endpoint and the DatagramTransport it returns.

UDP over IPv4/IPv6 and Unix datagram sockets share one transport. Reading is one syscall per
datagram straight into `datagram_received`. `sendto` sends at once when nothing is queued;
if the kernel's buffer is full the datagram is copied into a FIFO and sent when the socket is
writable again, with asyncio's flow control (`pause_writing` above the high-water mark,
`resume_writing` at the low-water mark). Send and receive errors that concern one datagram
(ICMP port unreachable on a connected socket, a message too long) go to the protocol's
`error_received`, and the transport stays open, as on the standard loop.

Argument checks and messages follow the Python version that runs: `reuse_address` is refused
as 3.11 refuses it (and is no parameter at all from 3.12), empty datagrams are sent from 3.13
and dropped before, and `sock=` accepts any non-stream socket from 3.13 (only SOCK_DGRAM
before).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import stat
import sys
import warnings
from typing import Any, Callable

from ..net.dns import resolve
from .base import FdTransport

logger = logging.getLogger("asyncio")

#: One UDP datagram never exceeds 64 KiB, so one recvfrom of this size reads any of them.
_UDP_READ_SIZE = 65536
#: Unix datagrams may be larger than 64 KiB (up to the socket buffer). They are read into
#: one reused buffer of asyncio's max_size, which avoids glibc's mmap per large recv.
_UNIX_READ_SIZE = 256 * 1024

_SENDS_EMPTY_DATAGRAMS = sys.version_info >= (3, 13)
_HAS_REUSE_ADDRESS_PARAM = sys.version_info < (3, 12)
_INET_FAMILIES = (socket.AF_INET, getattr(socket, "AF_INET6", socket.AF_INET))
_WOULD_BLOCK = (BlockingIOError, InterruptedError)
_UNSET = object()


class DatagramTransport(FdTransport, asyncio.DatagramTransport):
    """A datagram socket as an asyncio transport.

    It is also an `asyncio.Transport`, as the standard loop's datagram transport is (programs
    and CPython's own tests check `isinstance(transport, asyncio.Transport)`); the stream
    methods it inherits that way (write, write_eof, ...) raise NotImplementedError there and
    here alike. Reading can be paused, as on the standard loop. The lifecycle and flow
    control are `FdTransport`'s; the write buffer holds whole datagrams.
    """

    __slots__ = ("_sock", "_address", "_send_connected", "_read_buffer")

    def __init__(self, loop: Any, sock: socket.socket, protocol: asyncio.BaseProtocol,
                 address: Any = None, waiter: asyncio.Future | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(extra)
        self._sock = None  # until set below, __del__ has nothing to close
        self._note_socket_names(sock)
        peername = self._extra["peername"]
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


# ------------------------------------------------------------------------- the endpoint

def _set_reuseport(sock: socket.socket) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError("reuse_port not supported by socket module, "
                         "SO_REUSEPORT defined but not implemented.") from None


def _check_given_socket(sock: socket.socket, options: dict[str, Any]) -> None:
    if _SENDS_EMPTY_DATAGRAMS:
        if sock.type == socket.SOCK_STREAM:
            raise ValueError(f"A datagram socket was expected, got {sock!r}")
    elif sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"A UDP Socket was expected, got {sock!r}")
    problems = ", ".join(f"{name}={value}" for name, value in options.items() if value)
    if problems:
        raise ValueError("socket modifier keyword arguments can not be used "
                         f"when sock is specified. ({problems})")


def _remove_stale_unix_socket(path: Any) -> None:
    """Remove a socket file left by an earlier endpoint, so bind() can reuse its path."""
    if not path or path[0] in (0, "\x00"):
        return  # an abstract-namespace address: nothing on disk
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)


async def _address_pairs(loop: Any, local_addr: Any, remote_addr: Any, family: int,
                         proto: int, flags: int) -> list[tuple[tuple[int, int], list]]:
    """[((family, proto), [local sockaddr, remote sockaddr]), ...] to try in order.

    Every (family, protocol) pair must have an address for each side the caller gave, so a
    local IPv4 address is never paired with a remote IPv6 one.
    """
    by_key: dict[tuple[int, int], list] = {}
    for index, addr in ((0, local_addr), (1, remote_addr)):
        if addr is None:
            continue
        if not (isinstance(addr, tuple) and len(addr) == 2):
            raise TypeError("2-tuple is expected")
        infos = await resolve(loop, addr, family=family, type=socket.SOCK_DGRAM, proto=proto,
                              flags=flags)
        for fam, _type, pro, _name, sockaddr in infos:
            by_key.setdefault((fam, pro), [None, None])
            if by_key[(fam, pro)][index] is None:
                by_key[(fam, pro)][index] = sockaddr
    pairs = [(key, pair) for key, pair in by_key.items()
             if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))]
    if not pairs:
        raise ValueError("can not get address information")
    return pairs


async def _open_socket(loop: Any, pairs: Any, local_addr: Any, remote_addr: Any,
                       reuse_port: Any, allow_broadcast: Any) -> tuple[socket.socket, Any]:
    """The first (family, proto) pair that binds and connects; else the first error."""
    errors: list[OSError] = []
    for (fam, pro), (local_address, remote_address) in pairs:
        sock = None
        try:
            sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
            if reuse_port:
                _set_reuseport(sock)
            if allow_broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setblocking(False)
            if local_addr:
                sock.bind(local_address)
            if remote_addr:
                if not allow_broadcast:
                    # A broadcast endpoint stays unconnected: replies come from other hosts.
                    await loop.sock_connect(sock, remote_address)
                return sock, remote_address
            return sock, None
        except OSError as exc:
            if sock is not None:
                sock.close()
            errors.append(exc)
        except BaseException:
            if sock is not None:
                sock.close()
            raise
    try:
        raise errors[0]
    finally:
        errors = []  # break the traceback cycle


async def create_datagram_endpoint(loop: Any, protocol_factory: Callable[[], Any],
                                   local_addr: Any = None, remote_addr: Any = None, *,
                                   family: int = 0, proto: int = 0, flags: int = 0,
                                   reuse_address: Any = _UNSET, reuse_port: bool | None = None,
                                   allow_broadcast: bool | None = None,
                                   sock: socket.socket | None = None
                                   ) -> tuple[DatagramTransport, asyncio.BaseProtocol]:
    """Open a datagram endpoint (UDP or Unix) and return `(transport, protocol)`."""
    if reuse_address is not _UNSET and not _HAS_REUSE_ADDRESS_PARAM:
        raise TypeError("create_datagram_endpoint() got an unexpected keyword argument "
                        "'reuse_address'")
    if sock is not None:
        options = dict(local_addr=local_addr, remote_addr=remote_addr, family=family,
                       proto=proto, flags=flags, reuse_port=reuse_port,
                       allow_broadcast=allow_broadcast)
        if _HAS_REUSE_ADDRESS_PARAM:
            options["reuse_address"] = None if reuse_address is _UNSET else reuse_address
        _check_given_socket(sock, options)
        sock.setblocking(False)
        remote = None
    else:
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            pairs: Any = [((family, proto), (None, None))]
        elif hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            _remove_stale_unix_socket(local_addr)
            pairs = [((family, proto), (local_addr, remote_addr))]
        else:
            pairs = await _address_pairs(loop, local_addr, remote_addr, family, proto, flags)
        if reuse_address is not _UNSET:
            if reuse_address:
                raise ValueError("Passing `reuse_address=True` is no longer supported, as the "
                                 "usage of SO_REUSEPORT in UDP poses a significant security "
                                 "concern.")
            warnings.warn("The *reuse_address* parameter has been deprecated as of 3.5.10 "
                          "and is scheduled for removal in 3.11.", DeprecationWarning,
                          stacklevel=2)
        sock, remote = await _open_socket(loop, pairs, local_addr, remote_addr, reuse_port,
                                          allow_broadcast)
    protocol = protocol_factory()
    waiter = loop.create_future()
    transport = DatagramTransport(loop, sock, protocol, remote, waiter)
    if loop.get_debug():
        if local_addr:
            logger.info("Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                        local_addr, remote_addr, transport, protocol)
        else:
            logger.debug("Datagram endpoint remote_addr=%r created: (%r, %r)",
                         remote_addr, transport, protocol)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol
