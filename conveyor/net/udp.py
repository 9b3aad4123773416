"""create_datagram_endpoint: a UDP or Unix datagram socket and its DatagramTransport.

The endpoint resolves its local and remote addresses (`dns.resolve`), keeps only the
(family, protocol) pairs that have an address on every side the caller gave (so a local
IPv4 address is never paired with a remote IPv6 one), and opens the first pair that binds
and connects. A Unix `local_addr` replaces a stale socket file, as create_unix_server does.

Argument checks and messages follow the Python version that runs: `reuse_address` is
refused as 3.11 refuses it (and is no parameter at all from 3.12), and `sock=` accepts any
non-stream socket from 3.13 (only SOCK_DGRAM before).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import warnings
from typing import Any, Callable

from ..contract import LoopInternals
from ..transports.datagram import DatagramTransport
from .common import set_reuse_port
from .dns import resolve
from .unix import remove_stale_socket

logger = logging.getLogger("asyncio")

_HAS_REUSE_ADDRESS_PARAM = sys.version_info < (3, 12)
_ANY_DATAGRAM_SOCKET = sys.version_info >= (3, 13)
_UNSET = object()


def _check_given_socket(sock: socket.socket, options: dict[str, Any]) -> None:
    if _ANY_DATAGRAM_SOCKET:
        if sock.type == socket.SOCK_STREAM:
            raise ValueError(f"A datagram socket was expected, got {sock!r}")
    elif sock.type != socket.SOCK_DGRAM:
        raise ValueError(f"A UDP Socket was expected, got {sock!r}")
    problems = ", ".join(f"{name}={value}" for name, value in options.items() if value)
    if problems:
        raise ValueError("socket modifier keyword arguments can not be used "
                         f"when sock is specified. ({problems})")


async def _address_pairs(loop: LoopInternals, local_addr: Any, remote_addr: Any, family: int,
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


async def _open_socket(loop: LoopInternals, pairs: Any, local_addr: Any, remote_addr: Any,
                       reuse_port: Any, allow_broadcast: Any) -> tuple[socket.socket, Any]:
    """The first (family, proto) pair that binds and connects; else the first error."""
    errors: list[OSError] = []
    for (fam, pro), (local_address, remote_address) in pairs:
        sock = None
        try:
            sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
            if reuse_port:
                set_reuse_port(sock)
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


async def create_datagram_endpoint(loop: LoopInternals, protocol_factory: Callable[[], Any],
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
            remove_stale_socket(local_addr)
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
