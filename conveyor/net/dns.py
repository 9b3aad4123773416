"""Name resolution: getaddrinfo and getnameinfo on the loop's default executor, and
`resolve`, the one lookup every connection factory and `sock_connect` makes.

The C library's resolver blocks, so it runs on a worker thread, as the standard loop does.
Most addresses a program hands to `sock_connect` or `create_connection` are already numeric
(`"127.0.0.1"`, `"::1"`); `numeric_address` recognises those without a thread hop, because a
round trip through the executor costs far more than the connect itself.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from ..contract import LoopInternals

logger = logging.getLogger("asyncio")

#: Whether this Python can make IPv6 sockets; IPv6 literals are recognised only then.
_HAS_IPV6 = socket.has_ipv6


def _describe_query(host: Any, port: Any, family: int, type: int, proto: int,
                    flags: int) -> str:
    parts = [f"{host}:{port!r}"]
    if family:
        parts.append(f"family={family!r}")
    if type:
        parts.append(f"type={type!r}")
    if proto:
        parts.append(f"proto={proto!r}")
    if flags:
        parts.append(f"flags={flags!r}")
    return ", ".join(parts)


def _timed_getaddrinfo(loop: LoopInternals, host: Any, port: Any, family: int, type: int, proto: int,
                       flags: int) -> list:
    """Debug mode: resolve and log how long it took (runs on the executor thread).

    A resolution slower than `loop.slow_callback_duration` is logged at INFO, since a slow
    resolver is a common reason a connect seems to hang.
    """
    query = _describe_query(host, port, family, type, proto, flags)
    started = time.monotonic()
    logger.debug("Get address info %s", query)
    infos = socket.getaddrinfo(host, port, family, type, proto, flags)
    took = time.monotonic() - started
    message = f"Getting address info {query} took {took * 1e3:.3f}ms: {infos!r}"
    if took >= loop.slow_callback_duration:
        logger.info(message)
    else:
        logger.debug(message)
    return infos


async def getaddrinfo(loop: LoopInternals, host: Any, port: Any, *, family: int = 0, type: int = 0,
                      proto: int = 0, flags: int = 0) -> list:
    """Resolve `host`/`port` like `socket.getaddrinfo`, without blocking the loop."""
    if loop.get_debug():
        return await loop.run_in_executor(None, _timed_getaddrinfo, loop, host, port,
                                          family, type, proto, flags)
    return await loop.run_in_executor(None, socket.getaddrinfo, host, port, family, type,
                                      proto, flags)


async def getnameinfo(loop: LoopInternals, sockaddr: tuple, flags: int = 0) -> tuple[str, str]:
    """Reverse-resolve `sockaddr` like `socket.getnameinfo`, without blocking the loop."""
    return await loop.run_in_executor(None, socket.getnameinfo, sockaddr, flags)


async def resolve(loop: LoopInternals, address: tuple, *, family: int = 0, type: int = 0,
                  proto: int = 0, flags: int = 0) -> list:
    """The getaddrinfo entries for `address` (`(host, port, ...)`), never an empty list.

    A numeric address is answered here; anything else goes to `loop.getaddrinfo`, looked up
    on the loop so that a program or test that replaces that method is obeyed by every
    caller, as on the standard loop.
    """
    host, port = address[:2]
    info = numeric_address(host, port, family, type, proto, *address[2:])
    if info is not None:
        return [info]
    infos = await loop.getaddrinfo(host, port, family=family, type=type, proto=proto,
                                   flags=flags)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned empty list")
    return infos


def numeric_address(host: Any, port: Any, family: int = 0, type: int = socket.SOCK_STREAM,
                    proto: int = 0, flowinfo: int = 0, scopeid: int = 0) -> tuple | None:
    """The getaddrinfo entry for an already-numeric `host`, or None if it needs resolving.

    Returns `(family, type, proto, '', sockaddr)` when `host` is an IPv4 or IPv6 literal (or
    None, meaning the wildcard is not asked for here) and `port` is an int or numeric
    string, so callers can skip the executor. Anything unusual (a name, a service name, a
    scoped IPv6 address with `%`, a protocol that is not TCP/UDP for its type) returns None
    and the caller asks the resolver, which gives the definitive answer and error.
    """
    if not hasattr(socket, "inet_pton") or host is None:
        return None
    if type == socket.SOCK_STREAM and proto in (0, socket.IPPROTO_TCP):
        proto = socket.IPPROTO_TCP
    elif type == socket.SOCK_DGRAM and proto in (0, socket.IPPROTO_UDP):
        proto = socket.IPPROTO_UDP
    else:
        return None
    if port is None:
        port = 0
    elif isinstance(port, bytes) and port == b"":
        port = 0
    elif isinstance(port, str) and port == "":
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None
    if family == socket.AF_UNSPEC:
        families = [socket.AF_INET]
        if _HAS_IPV6:
            families.append(socket.AF_INET6)
    elif family in (socket.AF_INET, getattr(socket, "AF_INET6", None)):
        families = [family]
    else:
        return None
    if isinstance(host, bytes):
        try:
            host = host.decode("idna")
        except UnicodeError:
            return None
    if not isinstance(host, str) or "%" in host:
        return None
    for candidate in families:
        try:
            socket.inet_pton(candidate, host)
        except (OSError, ValueError):
            continue
        if _HAS_IPV6 and candidate == socket.AF_INET6:
            return candidate, type, proto, "", (host, port, flowinfo, scopeid)
        return candidate, type, proto, "", (host, port)
    return None
