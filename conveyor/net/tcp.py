"""TCP connections: create_connection and connect_accepted_socket.

create_connection resolves host:port (`dns.resolve`), then tries the addresses one after
another, or, with `happy_eyeballs_delay`, races them RFC 8305 style: the next attempt starts
when the previous one fails or the delay passes, whichever is first, and the first connected
socket wins. Arguments are checked as asyncio checks them (same exception types, messages
that name the argument); the connected socket becomes its transport in
`common.make_transport` (with TLS when `ssl=` asks for it).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

from ..contract import LoopInternals
from .common import ProtocolFactory, check_ssl_socket, check_ssl_timeouts, make_transport
from .dns import resolve


def _interleave(infos: list, first_family_count: int = 1) -> list:
    """Reorder addresses so families alternate (RFC 8305 section 4), keeping their order."""
    by_family: dict[int, list] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    groups = list(by_family.values())
    result: list = []
    if first_family_count > 1:
        result.extend(groups[0][:first_family_count - 1])
        groups[0] = groups[0][first_family_count - 1:]
    for batch in itertools.zip_longest(*groups):
        result.extend(info for info in batch if info is not None)
    return result


async def _connect_one(loop: LoopInternals, info: tuple, local_infos: list | None,
                       errors: list) -> socket.socket:
    """One attempt of create_connection; failures are appended to `errors` and re-raised.

    A failure's traceback keeps this frame alive, so the frame lets go of `errors` (and of
    its bind errors) on the way out: otherwise each error would be referenced by the list
    that collected it, a reference cycle that outlives the call (asyncio breaks it too)."""
    family, type_, proto, _, address = info
    sock = None
    bind_errors: list | None = None
    try:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        if local_infos is not None:
            bind_errors = []
            for lfamily, _, _, _, laddr in local_infos:
                if lfamily != family:
                    continue
                try:
                    sock.bind(laddr)
                    break
                except OSError as exc:
                    bind_errors.append(OSError(
                        exc.errno, f"error while attempting to bind on address {laddr!r}: "
                                   f"{(exc.strerror or '').lower()}"))
            else:
                if bind_errors:
                    errors.extend(bind_errors[:-1])
                    raise bind_errors[-1]
                raise OSError(f"no matching local address with family={family!r} found")
        await loop.sock_connect(sock, address)
        return sock
    except OSError as exc:
        errors.append(exc)
        if sock is not None:
            sock.close()
        raise
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        errors = bind_errors = None


async def _race(loop: LoopInternals, infos: list, local_infos: list | None, delay: float,
                errors: list) -> socket.socket | None:
    """Happy Eyeballs: staggered attempts, first connected socket wins, the rest are closed."""
    remaining = iter(infos)
    pending: set[asyncio.Task] = set()

    def start_next() -> bool:
        info = next(remaining, None)
        if info is None:
            return False
        pending.add(loop.create_task(_connect_one(loop, info, local_infos, errors)))
        return True

    winner = None
    exhausted = not start_next()
    try:
        while pending and winner is None:
            done, _ = await asyncio.wait(pending, timeout=None if exhausted else delay,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                exhausted = not start_next()
                continue
            for task in done:
                pending.discard(task)
                if task.cancelled() or task.exception() is not None:
                    continue
                if winner is None:
                    winner = task.result()
                else:
                    task.result().close()
            if winner is None and not exhausted:
                exhausted = not start_next()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            for result in results:
                if isinstance(result, socket.socket):
                    if winner is None:
                        winner = result
                    else:
                        result.close()
    return winner


def _connection_error(errors: list, all_errors: bool) -> BaseException:
    if all_errors:
        return ExceptionGroup("create_connection failed", errors)
    if len(errors) == 1:
        return errors[0]
    model = str(errors[0])
    if all(str(exc) == model for exc in errors):
        return errors[0]
    return OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in errors)))


async def create_connection(
        loop: LoopInternals, protocol_factory: ProtocolFactory, host: str | None = None,
        port: int | str | None = None, *, ssl: Any = None, family: int = 0, proto: int = 0,
        flags: int = 0, sock: socket.socket | None = None, local_addr: tuple | None = None,
        server_hostname: str | None = None, ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None, happy_eyeballs_delay: float | None = None,
        interleave: int | None = None, all_errors: bool = False,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Open a stream connection to host:port (or over `sock`) and return (transport, protocol)."""
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if server_hostname is None and ssl:
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if sock is not None:
        check_ssl_socket(sock)
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # RFC 8305 recommends interleaving when racing

    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
        infos = await resolve(loop, (host, port), family=family, type=socket.SOCK_STREAM,
                              proto=proto, flags=flags)
        local_infos = None
        if local_addr is not None:
            local_infos = await resolve(loop, local_addr, family=family,
                                        type=socket.SOCK_STREAM, proto=proto, flags=flags)
        if interleave:
            infos = _interleave(infos, interleave)
        errors: list = []
        if happy_eyeballs_delay is None:
            sock = None
            for info in infos:
                try:
                    sock = await _connect_one(loop, info, local_infos, errors)
                    break
                except OSError:
                    continue
        else:
            sock = await _race(loop, infos, local_infos, happy_eyeballs_delay, errors)
        if sock is None:
            try:
                raise _connection_error(errors, all_errors)
            finally:
                errors = []
    else:
        if sock is None:
            raise ValueError("host and port was not specified and no sock specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")

    try:
        return await make_transport(
            loop, sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
    except BaseException:
        if host is not None or port is not None:
            sock.close()
        raise


async def connect_accepted_socket(
        loop: LoopInternals, protocol_factory: ProtocolFactory, sock: socket.socket, *, ssl: Any = None,
        ssl_handshake_timeout: float | None = None, ssl_shutdown_timeout: float | None = None,
) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
    """Wrap a socket accepted elsewhere (server side of TLS when `ssl` is given)."""
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")
    check_ssl_timeouts(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    check_ssl_socket(sock)
    return await make_transport(loop, sock, protocol_factory, ssl, "", server_side=True,
                                ssl_handshake_timeout=ssl_handshake_timeout,
                                ssl_shutdown_timeout=ssl_shutdown_timeout)
